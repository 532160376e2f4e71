"""Issue 23: `wvwasi serve --web` (packager.web.SiteServer) answered any Host header (DNS
rebinding: a page of another site whose name resolves to 127.0.0.1 could read the app) and listed
folders. Now a foreign Host gets 403 and a folder without index.html 404, with no listing."""

from __future__ import annotations

from pathlib import Path

from bridge_client import get

from wvwasi.packager.web import SiteServer


def test_foreign_hosts_are_refused_and_folders_never_listed(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<p>app</p>")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "secret-name.txt").write_text("x")
    server = SiteServer(tmp_path)
    port = int(server.start().rstrip("/").rsplit(":", 1)[1])
    try:
        assert get(port, "/").status == 200
        assert get(port, "/", {"Host": f"localhost:{port}"}).status == 200
        assert get(port, "/data/secret-name.txt").status == 200
        for host in (f"evil.example:{port}", "127.0.0.1", f"127.0.0.1:{port + 1}", ""):
            assert get(port, "/", {"Host": host}).status == 403, host
            assert get(port, "/data/secret-name.txt", {"Host": host}).status == 403, host
        for folder in ("/data/", "/data"):
            resp = get(port, folder)
            assert resp.status in (301, 404), folder
        assert get(port, "/data/").status == 404
    finally:
        server.close()
