#!/bin/sh
# @NAME@ @VERSION@, a single-file wvwasi app (docs/build.md, "onefile").
# The app folder follows this script: a gzip-compressed tar archive of @SIZE@ bytes. The first
# launch checks its SHA-256, extracts it once into
# $XDG_CACHE_HOME/@CODE@/@IDENT@/onefile/@NAME16@/ (default ~/.cache; a folder no preopen of any
# app may reach) and makes it read-only; later launches check that folder and run the app from
# it. Symlinks planted in place of that folder or its lock are removed, never followed. Needs
# sh, tail, gzip, tar, ls, awk, cksum, chmod, mkdir, mv, rm, touch, mktemp; sha256sum and flock
# where present.
digest=@DIGEST@
top=@TOP@
exe=@EXE@
offset=@OFFSET@
self=$0
case $self in /*) ;; *) self=$PWD/$self ;; esac
export WVWASI_ONEFILE="$self"  # where the app's --update writes its new version
case ${XDG_CACHE_HOME:-} in
    /*) cache=$XDG_CACHE_HOME ;;
    *) cache=${HOME:-/nonexistent}/.cache ;;
esac
code=$cache/@CODE@
base=$code/@IDENT@/onefile
dir=$base/@NAME16@
marker=.wvwasi-onefile
damaged=no

# Type, mode, size and name of everything under $1 (but dotfiles: the marker), as one checksum.
fingerprint() {
    (cd "$1" && LC_ALL=C ls -lnR .) |
        awk '/^total /{next} {$2=$3=$4=$6=$7=$8=""; if ($1 ~ /^d/) $5=""; print}' | cksum
}

# Is $1 this archive, extracted completely and unchanged since (its marker says so)? Never a
# symlink: one planted there could lead to any folder holding a marker.
intact() {
    [ ! -L "$1" ] && [ -f "$1/$marker" ] &&
        [ "$(cat "$1/$marker")" = "$digest $(fingerprint "$1")" ]
}

# Remove folders this launcher made read-only (a symlink: only the link).
remove() {
    for f in "$@"; do
        [ -L "$f" ] || chmod -R u+w "$f" 2>/dev/null
        rm -rf "$f"
    done
}

# Are the folders above $dir real folders (or missing), not symlinks someone planted?
no_links() {
    for f in "$code" "$code/@IDENT@" "$base"; do
        if [ -L "$f" ]; then
            echo "$exe: $f is a symlink, not a folder: not following it" >&2
            return 1
        fi
    done
}

# Extract the archive into the new folder $1 and write its marker; fails on a damaged archive
# (then sets damaged=yes), a full disk or a folder that cannot be written.
extract() {
    mkdir "$1" || return 1
    if command -v sha256sum >/dev/null 2>&1; then
        sum=$(tail -c +"$offset" "$self" | sha256sum) || return 1
        if [ "${sum%% *}" != "$digest" ]; then
            damaged=yes
            return 1
        fi
    fi
    { tail -c +"$offset" "$self" | gzip -dc 2>/dev/null; echo $? 2>/dev/null >"$1.gzip"; } |
        tar -xf - -C "$1" 2>/dev/null &&
        [ "$(cat "$1.gzip")" = 0 ] && rm -f "$1.gzip" &&
        chmod -R a-w "$1/$top" &&
        printf '%s %s\n' "$digest" "$(fingerprint "$1")" >"$1/$marker"
}

# Stop here if extract() found the archive damaged.
stop_if_damaged() {
    if [ "$damaged" = yes ]; then
        echo "$exe: this file is damaged (its SHA-256 is not the one it was built with)" >&2
        exit 1
    fi
}

# Run the app from the folder $1 with the remaining arguments (this process becomes the app).
run_from() {
    folder=$1
    shift
    exec 9>&-
    exec "$folder/$top/$exe" "$@"
}

links=ok
no_links || links=planted
if [ $links = ok ] && intact "$dir"; then
    run_from "$dir" "$@"
fi
# A damaged or partial folder is replaced; one that is not there yet is only ever created (a
# launch racing this one without flock may be starting from it).
if [ -e "$dir" ] || [ -L "$dir" ]; then replace=yes; else replace=no; fi
lock=$base/.lock
if [ $links = ok ] && mkdir -p "$base" 2>/dev/null &&
    { [ -f "$lock" ] && [ ! -L "$lock" ] || { remove "$lock" && touch "$lock"; }; } 2>/dev/null &&
    { command exec 9>>"$lock"; } 2>/dev/null; then
    if command -v flock >/dev/null 2>&1; then
        flock 9  # one launch extracts, the others wait for it
        remove "$base"/.extract-* "$base"/.damaged-*  # left by a launch that was killed
    fi
    if intact "$dir"; then
        run_from "$dir" "$@"
    fi
    tmp=$base/.extract-$$
    remove "$tmp" "$tmp.gzip"
    if extract "$tmp"; then
        sync -f "$tmp/$marker" 2>/dev/null || sync
        if intact "$dir"; then  # (without flock) another launch got there first
            remove "$tmp"
        else
            if [ $replace = yes ]; then
                mv "$dir" "$base/.damaged-$$" 2>/dev/null
            fi
            mv "$tmp" "$dir"  # into "$dir" if another launch got there first (without flock)
            remove "$dir/${tmp##*/}" "$base/.damaged-$$"
        fi
        for old in "$base"/*; do  # other versions of this app
            [ "$old" = "$dir" ] || remove "$old"
        done
        run_from "$dir" "$@"
    fi
    remove "$tmp" "$tmp.gzip"
    exec 9>&-
fi
stop_if_damaged

echo "$exe: cannot extract into $base (read-only or full?): running from a temporary copy" >&2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/$exe-XXXXXX") || exit 1
trap 'remove "$tmp"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
if ! extract "$tmp/x"; then
    stop_if_damaged
    echo "$exe: cannot extract into ${TMPDIR:-/tmp} either (full, or this file is damaged)" >&2
    exit 1
fi
"$tmp/x/$top/$exe" "$@"
exit $?
