//! The `count` service: a long-lived worker. For each line of text it reads on stdin it writes
//! one line of JSON on stdout: `{"words": W, "chars": C, "total": T}` (T: words so far).
use std::io::{self, BufRead, Write};

fn main() {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut total = 0;
    for line in io::stdin().lock().lines() {
        let line = line.expect("stdin is UTF-8 text");
        let words = line.split_whitespace().count();
        total += words;
        writeln!(out, r#"{{"words": {}, "chars": {}, "total": {}}}"#, words,
                 line.chars().count(), total).expect("stdout is open");
        out.flush().expect("stdout is open");
    }
}
