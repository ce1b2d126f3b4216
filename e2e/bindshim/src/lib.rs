//! `libeddy_bindshim.so`: loaded with `LD_PRELOAD` into every process
//! `eddy-kubelet` starts, it gives each pod its own loopback address.
//!
//! It exports `bind`. When `EDDY_POD_IP` holds an IPv4 address and a
//! process binds an IPv4 socket to the wildcard address (`0.0.0.0`) or to
//! `127.0.0.1`, the address is replaced by the pod IP (the port is kept)
//! before the real `bind` (found once with `dlsym(RTLD_NEXT, "bind")`) is
//! called. Everything else goes to the real `bind` unchanged, including
//! IPv6 binds (`::` and `::1` are not rewritten: a pod that listens on the
//! IPv6 wildcard still shares the port space with every other pod).
//!
//! Only dynamically linked programs that call the C library's `bind` are
//! affected: statically linked binaries (musl, pure Go) ignore
//! `LD_PRELOAD`.

use std::net::Ipv4Addr;
use std::sync::OnceLock;

type BindFn =
    unsafe extern "C" fn(libc::c_int, *const libc::sockaddr, libc::socklen_t) -> libc::c_int;

/// The C library's `bind`, looked up once.
fn real_bind() -> Option<BindFn> {
    static REAL: OnceLock<Option<BindFn>> = OnceLock::new();
    *REAL.get_or_init(|| {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT finds the
        // definition after this library, which is the C library's `bind`
        // with exactly this signature.
        let symbol = unsafe { libc::dlsym(libc::RTLD_NEXT, c"bind".as_ptr()) };
        if symbol.is_null() {
            None
        } else {
            // SAFETY: the symbol is `bind`, whose C signature is `BindFn`.
            Some(unsafe { std::mem::transmute::<*mut libc::c_void, BindFn>(symbol) })
        }
    })
}

/// `EDDY_POD_IP`, parsed once; `None` when unset or not an IPv4 address.
fn pod_ip() -> Option<Ipv4Addr> {
    static POD_IP: OnceLock<Option<Ipv4Addr>> = OnceLock::new();
    *POD_IP.get_or_init(|| std::env::var("EDDY_POD_IP").ok()?.parse().ok())
}

/// The address to bind instead of `requested`, if any: the pod IP for the
/// wildcard and `127.0.0.1`.
pub fn rewrite(requested: Ipv4Addr, pod_ip: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
    let pod_ip = pod_ip?;
    (requested.is_unspecified() || requested == Ipv4Addr::LOCALHOST).then_some(pod_ip)
}

/// Interposes the C library's `bind`; see the crate documentation.
///
/// # Safety
///
/// Same contract as bind(2): `addr` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn bind(
    fd: libc::c_int,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> libc::c_int {
    let Some(real) = real_bind() else {
        // SAFETY: setting errno is always allowed.
        unsafe { *libc::__errno_location() = libc::ENOSYS };
        return -1;
    };
    let is_inet = !addr.is_null()
        && len as usize >= std::mem::size_of::<libc::sockaddr_in>()
        // SAFETY: addr is non-null and at least a sockaddr_in long.
        && libc::c_int::from(unsafe { (*addr).sa_family }) == libc::AF_INET;
    if is_inet {
        // SAFETY: checked above that this is an AF_INET address of full
        // length; read_unaligned copes with any alignment.
        let mut inet = unsafe { std::ptr::read_unaligned(addr.cast::<libc::sockaddr_in>()) };
        let requested = Ipv4Addr::from(u32::from_be(inet.sin_addr.s_addr));
        if let Some(replacement) = rewrite(requested, pod_ip()) {
            inet.sin_addr.s_addr = u32::from(replacement).to_be();
            // SAFETY: a valid sockaddr_in of the size we pass.
            return unsafe {
                real(
                    fd,
                    (&inet as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
        }
    }
    // SAFETY: the caller's arguments, unchanged.
    unsafe { real(fd, addr, len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 7);

    #[test]
    fn wildcard_and_localhost_become_the_pod_ip() {
        assert_eq!(rewrite(Ipv4Addr::UNSPECIFIED, Some(POD)), Some(POD));
        assert_eq!(rewrite(Ipv4Addr::LOCALHOST, Some(POD)), Some(POD));
    }

    #[test]
    fn other_addresses_and_no_pod_ip_are_left_alone() {
        assert_eq!(rewrite(Ipv4Addr::new(127, 0, 0, 9), Some(POD)), None);
        assert_eq!(rewrite(Ipv4Addr::new(10, 1, 2, 3), Some(POD)), None);
        assert_eq!(rewrite(Ipv4Addr::UNSPECIFIED, None), None);
    }
}
