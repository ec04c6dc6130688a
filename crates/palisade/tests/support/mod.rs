//! Shared by the integration tests: a real `palisade::serve` on 127.0.0.1:0, and a route that
//! holds requests until released.

#![allow(dead_code)] // each test binary uses part of it

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, routing::get};
use palisade::{ServeReport, Server};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, oneshot, watch},
    task::JoinHandle,
};

/// A server run by `palisade::serve_with_shutdown`.
pub(crate) struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<ServeReport>>,
}

impl Running {
    pub(crate) async fn start(app: Router, config: impl Into<Server>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(palisade::serve_with_shutdown(
            listener,
            app,
            config.into(),
            async {
                let _ = signal.await;
            },
        ));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn shut_down(&mut self) {
        let _ = self.stop.take().unwrap().send(());
    }

    pub(crate) async fn report(self) -> ServeReport {
        self.task.await.unwrap().unwrap()
    }
}

/// Requests to its route wait until [`release`](Self::release).
#[derive(Clone)]
pub(crate) struct Hold {
    entered: Arc<Semaphore>,
    release: watch::Sender<bool>,
}

impl Hold {
    pub(crate) fn new() -> Self {
        Self {
            entered: Arc::new(Semaphore::new(0)),
            release: watch::channel(false).0,
        }
    }

    /// A handler that waits for the release.
    pub(crate) fn route(&self) -> axum::routing::MethodRouter {
        let hold = self.clone();
        get(move || {
            let hold = hold.clone();
            async move {
                hold.entered.add_permits(1);
                let mut released = hold.release.subscribe();
                let _ = released.wait_for(|r| *r).await;
                "released"
            }
        })
    }

    /// Waits until `n` requests are inside the handler.
    pub(crate) async fn entered(&self, n: u32) {
        self.entered.acquire_many(n).await.unwrap().forget();
    }

    pub(crate) fn release(&self) {
        self.release.send_replace(true);
    }
}
