//! Outbound TCP for a service through wvwasi's `wvwasi_net` imports (the C header is
//! <wvwasi/net.h>). The service may connect only to what `net = { connect = [...] }` lists in
//! wvwasi.toml; TLS is done by the host, with its certificate checks. Use it with `mod net;`:
//!
//!     let mut conn = net::Conn::connect_tls("api.example.com", 443)?;
//!     conn.write_all(b"GET / HTTP/1.0\r\nHost: api.example.com\r\n\r\n")?;
//!     let mut reply = String::new();
//!     conn.read_to_string(&mut reply)?;
#![allow(dead_code)]

use std::io;

#[link(wasm_import_module = "wvwasi_net")]
extern "C" {
    #[link_name = "connect"]
    fn net_connect(host: *const u8, host_len: usize, port: i32, tls: i32) -> i32;
    #[link_name = "send"]
    fn net_send(handle: i32, buf: *const u8, len: usize) -> isize;
    #[link_name = "recv"]
    fn net_recv(handle: i32, buf: *mut u8, len: usize, timeout_ms: i32) -> isize;
    #[link_name = "close"]
    fn net_close(handle: i32) -> i32;
    #[link_name = "error"]
    fn net_error(buf: *mut u8, len: usize) -> isize;
}

/// WASI errno values the calls return (negated).
pub const EACCES: i32 = 2;
pub const EAGAIN: i32 = 6;

/// The host's text for the last failure of this instance, as an io::Error carrying `errno`.
fn last_error(errno: i32) -> io::Error {
    let mut buf = [0u8; 512];
    let len = unsafe { net_error(buf.as_mut_ptr(), buf.len()) } as usize;
    let text = String::from_utf8_lossy(&buf[..len.min(buf.len() - 1)]).into_owned();
    let kind = match errno {
        EACCES => io::ErrorKind::PermissionDenied,
        EAGAIN => io::ErrorKind::WouldBlock,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("{} (errno {})", text, errno))
}

/// One connection; closed when dropped.
pub struct Conn {
    handle: i32,
    /// How long one read waits, in milliseconds (negative: up to the manifest's read_timeout).
    pub timeout_ms: i32,
}

impl Conn {
    /// A TCP connection to `host:port`.
    pub fn connect(host: &str, port: u16) -> io::Result<Conn> {
        Conn::open(host, port, 0)
    }

    /// A TLS connection to `host:port`, verified by the host for `host`.
    pub fn connect_tls(host: &str, port: u16) -> io::Result<Conn> {
        Conn::open(host, port, 1)
    }

    fn open(host: &str, port: u16, tls: i32) -> io::Result<Conn> {
        let rc = unsafe { net_connect(host.as_ptr(), host.len(), port as i32, tls) };
        if rc < 0 {
            return Err(last_error(-rc));
        }
        Ok(Conn { handle: rc, timeout_ms: -1 })
    }
}

impl io::Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rc = unsafe { net_recv(self.handle, buf.as_mut_ptr(), buf.len(), self.timeout_ms) };
        if rc < 0 {
            return Err(last_error(-rc as i32));
        }
        Ok(rc as usize)
    }
}

impl io::Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let rc = unsafe { net_send(self.handle, buf.as_ptr(), buf.len()) };
        if rc < 0 {
            return Err(last_error(-rc as i32));
        }
        Ok(rc as usize)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        unsafe { net_close(self.handle) };
    }
}
