"""`<audio>` plays in the app's real GTK (WebKitGTK + GStreamer) window under Xvfb: a short WAV
generated in the page, from a blob: URL (allowed by the app's CSP), through `audio.play()`.
The Linux packages depend on the GStreamer plugins this needs (packager/formats/_linux.py).

The self-test calls the page long after any user gesture, and WebKitGTK's default autoplay
policy then refuses `play()` with sound (NotAllowedError; docs/page-api.md, "Media"), so the
element is muted: GStreamer still parses, decodes and clocks the WAV, which is what is tested."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from build_helpers import new_project
from xvfb import xvfb

AUDIO_CHECK = """
function wav(seconds) {
  const rate = 8000, n = rate * seconds, v = new DataView(new ArrayBuffer(44 + n * 2));
  const text = (at, s) => [...s].forEach((c, i) => v.setUint8(at + i, c.charCodeAt(0)));
  text(0, 'RIFF'); v.setUint32(4, 36 + n * 2, true); text(8, 'WAVE'); text(12, 'fmt ');
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true);
  v.setUint16(34, 16, true); text(36, 'data'); v.setUint32(40, n * 2, true);
  for (let i = 0; i < n; i++) v.setInt16(44 + i * 2, Math.round(Math.sin(i / 4) * 8000), true);
  return new Blob([v.buffer], {type: 'audio/wav'});
}
const greetCheck = globalThis.wvwasiSelfTest;
globalThis.wvwasiSelfTest = async () => {
  const audio = new Audio(URL.createObjectURL(wav(3)));
  audio.muted = true;
  let detail;
  try {
    await audio.play();
    const start = audio.currentTime;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    detail = audio.currentTime - start > 0.5 ? 'played' : `stuck at ${audio.currentTime} s`;
    audio.pause();
  } catch (e) {
    detail = `play() rejected: ${e.name}: ${e.message}`;
  }
  return {...await greetCheck(), audio: {ok: detail === 'played', detail}};
};
"""


def test_audio_plays_in_the_gtk_window(tmp_path: Path) -> None:
    project = new_project(tmp_path, "Media Check")
    with open(project / "ui" / "app.js", "a", encoding="utf-8") as f:
        f.write(AUDIO_CHECK)
    (tmp_path / "tmp").mkdir()
    with xvfb() as display:
        env = {**os.environ, "DISPLAY": display, "XDG_DATA_HOME": str(tmp_path / "data"),
               "XDG_CACHE_HOME": str(tmp_path / "cache"), "TMPDIR": str(tmp_path / "tmp")}
        proc = subprocess.run(
            [sys.executable, "-m", "wvwasi", "run", str(project), "--self-test", "--webview",
             "gtk"], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["app_checks"]["audio"] == {"ok": True, "detail": "played"}, report
