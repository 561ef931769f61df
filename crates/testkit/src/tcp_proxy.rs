//! A TCP proxy on loopback that a test can cut and restore: the network
//! between the service and PostgreSQL or Redis failing, without touching the
//! shared servers themselves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards every connection to `upstream` until [`TcpProxy::cut`]: then every
/// open connection is closed and new ones are closed as soon as accepted (the
/// client sees resets, as after a network failure that the kernel noticed),
/// until [`TcpProxy::restore`]. Runs on a thread of its own for the rest of
/// the test process.
#[derive(Clone)]
pub struct TcpProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: Arc<watch::Sender<u64>>,
}

impl TcpProxy {
    /// Starts a proxy on an ephemeral loopback port to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> TcpProxy {
        let upstream = upstream.to_string();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind a loopback port");
                let (generation, _) = watch::channel(0u64);
                let proxy = TcpProxy {
                    addr: listener.local_addr().expect("the bound address"),
                    cut: Arc::new(AtomicBool::new(false)),
                    generation: Arc::new(generation),
                };
                let _ = sender.send(proxy.clone());
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    if proxy.cut.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let mut cut = proxy.generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(&upstream).await else {
                            return;
                        };
                        let (mut client, mut server) = (client, server);
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            });
        });
        receiver.recv().expect("the proxy started")
    }

    /// `127.0.0.1:<port>` of the proxy.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}
