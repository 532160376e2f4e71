"""The service host: everything that runs a manifest's services under wasmtime.

`service_host.ServiceHost` is the entry point (spawn, run_task, subscribe); the rest are its
parts: one running instance (`instance`, `stdio`, `poll`, `wasmtime_ext`), compiled modules
(`modules`), the folders a spawn may reach (`hostdirs`, `hostpath`, `tempdirs`), the ipc
framing (`framing`) and the events instances report (`events`). The app (runtime/app.py) and
the bridge (runtime/bridge/) use it; it never imports them.
"""
