//! Test helpers: a real OTLP/gRPC receiver on 127.0.0.1:0, a per-test `tracing` dispatcher
//! around a router, and readers for exported spans.

#![allow(dead_code)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use axum::{body::Body, extract::Request};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
    trace::v1::Span,
};
use tokio::{net::TcpListener, sync::Notify};
use tower::{Layer, Service};
use tracing::{Dispatch, instrument::WithSubscriber};

/// What a receiver got: every export request, in order.
#[derive(Clone, Default)]
pub(crate) struct Received {
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    notify: Arc<Notify>,
}

impl Received {
    pub(crate) fn push(&self, request: ExportTraceServiceRequest) {
        self.requests.lock().unwrap().push(request);
        self.notify.notify_waiters();
    }

    /// Every span received so far, with its resource's `service.name`.
    pub(crate) fn spans(&self) -> Vec<(String, Span)> {
        let requests = self.requests.lock().unwrap();
        let mut out = Vec::new();
        for request in requests.iter() {
            for resource_spans in &request.resource_spans {
                let service = resource_spans
                    .resource
                    .as_ref()
                    .and_then(|r| string_attr(&r.attributes, "service.name"))
                    .unwrap_or_default();
                for scope in &resource_spans.scope_spans {
                    for span in &scope.spans {
                        out.push((service.clone(), span.clone()));
                    }
                }
            }
        }
        out
    }

    /// Waits (up to 20 s) until at least `n` spans arrived, then returns them all.
    ///
    /// # Panics
    ///
    /// When they do not arrive, listing what did.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let notified = self.notify.notified();
            let spans = self.spans();
            if spans.len() >= n {
                return spans.into_iter().map(|(_, s)| s).collect();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let names: Vec<String> = spans.iter().map(|(_, s)| s.name.clone()).collect();
                panic!("expected {n} spans, received {}: {names:?}", names.len());
            }
        }
    }
}

struct Receiver(Received);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// An OTLP/gRPC trace receiver on `127.0.0.1:0`: a real tonic server.
pub(crate) async fn grpc_receiver() -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let service = TraceServiceServer::new(Receiver(received.clone()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, received)
}

/// Runs every request of a router with `dispatch` as the default subscriber (in `call`, where
/// the server span is created, and in the future), so each test has its own pipeline while the
/// server runs on any runtime thread.
#[derive(Clone)]
pub(crate) struct WithDispatchLayer(pub Dispatch);

impl<S> Layer<S> for WithDispatchLayer {
    type Service = WithDispatchService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithDispatchService {
            inner,
            dispatch: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct WithDispatchService<S> {
    inner: S,
    dispatch: Dispatch,
}

impl<S> Service<Request<Body>> for WithDispatchService<S>
where
    S: Service<Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tracing::instrument::WithDispatch<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let inner = &mut self.inner;
        tracing::dispatcher::with_default(&self.dispatch, || inner.call(request))
            .with_subscriber(self.dispatch.clone())
    }
}

pub(crate) fn string_attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

pub(crate) fn int_attr(attributes: &[KeyValue], key: &str) -> Option<i64> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::IntValue(i) => Some(*i),
            _ => None,
        }
    })
}

pub(crate) fn string_array_attr(attributes: &[KeyValue], key: &str) -> Option<Vec<String>> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::ArrayValue(array) => Some(
                array
                    .values
                    .iter()
                    .filter_map(|v: &AnyValue| match v.value.as_ref()? {
                        Value::StringValue(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        }
    })
}

/// Attribute keys and a printable value, for failure messages.
pub(crate) fn attrs(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                format!("{:?}", kv.value.as_ref().and_then(|v| v.value.as_ref())),
            )
        })
        .collect()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The span named `name`.
///
/// # Panics
///
/// When there is not exactly one.
pub(crate) fn one<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "spans named {name:?} among {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    found[0]
}
