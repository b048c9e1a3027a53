//! An HTTP endpoint that reads each request whole and then drops the connection without an
//! answer: what a client sees when a request reached the service and the answer was lost. It
//! counts the requests that arrived.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// A running black hole.
pub struct BlackHole {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    requests: Arc<AtomicUsize>,
}

impl BlackHole {
    /// Starts one on a random local port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut received = Vec::new();
                    let mut buffer = [0u8; 8192];
                    while let Ok(read) = stream.read(&mut buffer).await {
                        if read == 0 {
                            break;
                        }
                        received.extend_from_slice(&buffer[..read]);
                        if request_complete(&received) {
                            counter.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                    }
                    // Dropping the stream closes the connection with no answer.
                });
            }
        });
        Self { url, requests }
    }

    /// How many whole requests arrived.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Whether `received` holds a whole HTTP/1.1 request (headers and a `Content-Length` body).
fn request_complete(received: &[u8]) -> bool {
    let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    received.len() >= end + 4 + length
}
