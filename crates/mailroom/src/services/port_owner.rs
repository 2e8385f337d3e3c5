//! Who holds a TCP port, for "the port is taken (by what, where known)".
//!
//! On Linux the kernel lists listening sockets in `/proc/net/tcp` and `/proc/net/tcp6` with
//! their inode; a process holding one has a descriptor linking to `socket:[INODE]`. Only the
//! processes this user may inspect can be named; otherwise the answer is `None`.

use std::path::Path;

/// The inodes of sockets listening on `port`, from the text of `/proc/net/tcp` or `tcp6`.
///
/// Each line after the header reads `sl local_address rem_address st ... inode ...`, the
/// local address as `HEXIP:HEXPORT` and the state `0A` for LISTEN.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1)?;
            let state = f.get(3)?;
            let inode = f.get(9)?;
            let (_, p) = local.rsplit_once(':')?;
            let p = u16::from_str_radix(p, 16).ok()?;
            (p == port && *state == "0A")
                .then(|| inode.parse().ok())
                .flatten()
        })
        .filter(|i| *i != 0)
        .collect()
}

/// The process listening on `port`: "pid N (NAME)", where this user can see it.
pub fn owner(port: u16) -> Option<String> {
    let mut inodes = Vec::new();
    for t in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(t) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if wanted.iter().any(|w| Path::new(w) == link) {
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                return Some(format!("pid {pid} ({})", comm.trim()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_are_found_by_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:09DD 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 44321 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:09DD 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 44400 1 0000000000000000 20 4 30 10 -1\n\
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0000000000000000 100 0 0 10 0\n\
   garbage\n";
        assert_eq!(listening_inodes(table, 2525), vec![44321], "LISTEN only");
        assert_eq!(listening_inodes(table, 22), vec![1234]);
        assert!(listening_inodes(table, 80).is_empty());
    }

    #[test]
    fn the_owner_of_a_port_this_process_holds_is_named() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let who = owner(port).expect("this process can see itself");
        assert!(
            who.starts_with(&format!("pid {} (", std::process::id())),
            "{who}"
        );
    }
}
