//! Frames for the veth canaries, sent with an AF_PACKET socket so one namespace suffices: a frame
//! sent on one end of the pair is received on the other, through tc egress, XDP and tc ingress.
use std::io;

/// Source address of the test frames; the LPM canary looks it up under 10.0.0.0/8.
pub const SOURCE: [u8; 4] = [10, 1, 2, 3];

fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A broadcast Ethernet frame carrying an IPv4/UDP datagram from SOURCE to 10.255.255.255.
pub fn frame() -> Vec<u8> {
    let payload = b"preflight canary";
    let udp_len = 8 + payload.len();
    let ip_len = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + ip_len);
    f.extend_from_slice(&[0xff; 6]); // broadcast
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]); // locally administered source
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip.extend_from_slice(&SOURCE);
    ip.extend_from_slice(&[10, 255, 255, 255]);
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&9u16.to_be_bytes()); // discard
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed for IPv4)
    f.extend_from_slice(payload);
    f
}

pub fn send(ifindex: u32, frame: &[u8], count: usize) -> io::Result<()> {
    // SAFETY: plain socket(2); the fd is closed below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from((libc::ETH_P_ALL as u16).to_be()),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is a C struct of integers and a byte array: all zeroes is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&frame[..6]);
    let mut result = Ok(());
    for _ in 0..count {
        // SAFETY: frame and addr are valid for the duration of the call.
        let n = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            result = Err(io::Error::last_os_error());
            break;
        }
    }
    // SAFETY: fd came from socket() above.
    unsafe { libc::close(fd) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ip_header_checksum_verifies() {
        let f = frame();
        let ip = &f[14..34];
        assert_eq!(checksum(ip), 0, "a header with its checksum sums to 0xffff");
        assert_eq!(&ip[12..16], &SOURCE);
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]) as usize, f.len() - 14);
    }
}
