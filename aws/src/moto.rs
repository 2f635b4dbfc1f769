//! A moto server (`moto[server]`, installed into `.venv` by `scripts/test`) on a free
//! loopback port, for the adapter tests. Stopped when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct MotoServer {
    child: Child,
    pub url: String,
}

impl MotoServer {
    /// `LONGHAUL_MOTO_SERVER`, or `.venv/bin/moto_server` at the workspace root.
    pub fn binary() -> PathBuf {
        if let Ok(p) = std::env::var("LONGHAUL_MOTO_SERVER") {
            return PathBuf::from(p);
        }
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server")
    }

    /// Starts moto and waits until it answers. Panics with what to do when it cannot.
    pub fn start() -> MotoServer {
        let bin = Self::binary();
        assert!(
            bin.exists(),
            "{} is missing: run scripts/venv (scripts/test does) or set LONGHAUL_MOTO_SERVER",
            bin.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        let server = MotoServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
