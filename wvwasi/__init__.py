"""wvwasi: desktop apps whose UI is a web page and whose logic is WASI WebAssembly."""

__version__ = "0.1.0"
