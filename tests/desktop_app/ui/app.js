// Records what the app window sends; the `open` listener is added late on purpose: the first
// launch's event must wait for it.
globalThis.received = {opens: [], menus: [], trays: []};
wvwasi.app.addEventListener('menu', (e) => received.menus.push(e.detail));
wvwasi.app.addEventListener('tray', (e) => received.trays.push(e.detail));
setTimeout(() => {
  wvwasi.app.addEventListener('open', (e) => {
    received.opens.push(e.detail);
    document.getElementById('status').textContent = `${received.opens.length} opened`;
  });
}, 1000);
