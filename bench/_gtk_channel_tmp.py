"""Same WebKitGTK page: WebSocket echo (aiohttp, loopback) vs WebKit script-message-with-reply vs Worker, one at a time."""
import asyncio, json, os, sys, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from xvfb import xvfb
from aiohttp import web, WSMsgType

PAGE = """<!doctype html><meta charset=utf-8><script>
const N = 2000;
async function rate(one) { await one(0); const t0 = performance.now(); for (let i = 0; i < N; i++) { const r = await one(i); if (r !== `message ${i}`) throw new Error('bad echo ' + r); } return N / ((performance.now() - t0) / 1000); }
function wsEcho() { return new Promise((res) => { const ws = new WebSocket(`ws://${location.host}/ws`); let w = null; ws.onmessage = (e) => w(e.data); ws.onopen = () => res((i) => new Promise((r) => { w = r; ws.send(`message ${i}`); })); }); }
function workerEcho() { const w = new Worker(URL.createObjectURL(new Blob(['onmessage = (e) => postMessage(e.data);']))); let f = null; w.onmessage = (e) => f(e.data); return (i) => new Promise((r) => { f = r; w.postMessage(`message ${i}`); }); }
const native = (i) => window.webkit.messageHandlers.echo.postMessage(`message ${i}`);
(async () => {
  const out = {ws: [], native: [], worker: []};
  const ws = await wsEcho(), wk = workerEcho();
  for (let r = 0; r < 3; r++) { out.ws.push(await rate(ws)); out.native.push(await rate(native)); out.worker.push(await rate(wk)); }
  window.webkit.messageHandlers.done.postMessage(JSON.stringify(out));
})().catch((e) => window.webkit.messageHandlers.done.postMessage(JSON.stringify({error: String(e)})));
</script>"""

def serve(port_box, ready):
    async def page(request): return web.Response(text=PAGE, content_type="text/html")
    async def ws(request):
        s = web.WebSocketResponse(compress=False); await s.prepare(request)
        async for m in s:
            if m.type == WSMsgType.TEXT: await s.send_str(m.data)
        return s
    async def main():
        app = web.Application(); app.router.add_get("/", page); app.router.add_get("/ws", ws)
        r = web.AppRunner(app); await r.setup(); site = web.TCPSite(r, "127.0.0.1", 0); await site.start()
        port_box.append(site._server.sockets[0].getsockname()[1]); ready.set()
        await asyncio.Event().wait()
    asyncio.run(main())

with xvfb() as display:
    os.environ["DISPLAY"] = display
    import gi
    gi.require_version("Gtk", "3.0"); gi.require_version("WebKit2", "4.1"); gi.require_version("JavaScriptCore", "4.1")
    from gi.repository import Gtk, WebKit2, JavaScriptCore, GLib
    box, ready = [], threading.Event()
    threading.Thread(target=serve, args=(box, ready), daemon=True).start(); ready.wait()
    ucm = WebKit2.UserContentManager()
    result = {}
    def on_echo(manager, value, reply):
        reply.return_value(JavaScriptCore.Value.new_string(value.get_context(), value.to_string()))
        return True
    def on_done(manager, msg):
        result.update(json.loads(msg.get_js_value().to_string())); Gtk.main_quit()
    ucm.connect("script-message-with-reply-received::echo", on_echo)
    ucm.register_script_message_handler_with_reply("echo", None)
    ucm.connect("script-message-received::done", on_done)
    ucm.register_script_message_handler("done")
    view = WebKit2.WebView.new_with_user_content_manager(ucm)
    win = Gtk.Window(); win.add(view); win.set_default_size(400, 300); win.show_all()
    view.load_uri(f"http://127.0.0.1:{box[0]}/")
    GLib.timeout_add_seconds(300, Gtk.main_quit)
    Gtk.main()
    print(json.dumps({k: [round(x) for x in v] if isinstance(v, list) else v for k, v in result.items()}))
