//! The dashboard's HTTP server: the page, its live feed (server-sent events), `/api/status` and
//! `/metrics`, all read-only, on a thread and runtime of its own so that no client can hold up
//! the run. Loopback by default; any other address needs the run's token on every request.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::board::Board;
use super::prometheus;

/// The page: HTML, CSS and the script that draws it, embedded in the binary.
const PAGE: &str = include_str!("page.html");

/// Connections served at once; more are closed on arrival, so that idle or hostile clients
/// cannot use up the process's file descriptors.
const MAX_CONNECTIONS: usize = 512;

/// What every request handler sees.
#[derive(Clone)]
struct Shared {
    board: Arc<Board>,
    token: Option<Arc<str>>,
}

/// Serves `board` on `bind` (port 0 picks one) from a thread of its own. A bind that is not
/// loopback is refused without `token`, which every request must then carry (`?token=` or
/// `Authorization: Bearer`). Returns the address it listens on.
pub fn start(bind: SocketAddr, token: Option<String>, board: Arc<Board>) -> Result<SocketAddr> {
    if !bind.ip().is_loopback() && token.is_none() {
        bail!(
            "--dashboard {bind}: a dashboard on a non-loopback address needs the run's token; \
             bind 127.0.0.1 and reach it through an ssh tunnel (README), or give the run a token"
        );
    }
    let listener = StdListener::bind(bind)
        .with_context(|| format!("--dashboard {bind}: cannot listen there"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let shared = Shared {
        board,
        token: token.map(Arc::from),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("dashboard".into())
        .spawn(move || runtime.block_on(serve(listener, shared)))?;
    Ok(addr)
}

/// Serves until the process ends.
async fn serve(listener: StdListener, shared: Shared) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("dashboard: {e}");
            return;
        }
    };
    let board = shared.board.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticks.tick().await;
            board.tick();
        }
    });
    let app = Router::new()
        .route("/", get(page))
        .route("/events", get(events))
        .route("/api/status", get(status))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(shared.clone(), authorize))
        .with_state(shared);
    let listener = Capped {
        inner: listener,
        permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
    };
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("dashboard: {e}");
    }
}

/// Refuses a request without the token, when the dashboard has one.
async fn authorize(
    State(shared): State<Shared>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &shared.token else {
        return next.run(request).await;
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="));
    if bearer == Some(&**token) || query == Some(&**token) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        "the run's token is needed: ?token=… or Authorization: Bearer … (it is in RUN_DIR/token)\n",
    )
        .into_response()
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn status(State(shared): State<Shared>) -> Response {
    match serde_json::to_string(&shared.board.status()) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn metrics(State(shared): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)],
        prometheus::render(&shared.board.status()),
    )
        .into_response()
}

/// The live feed: a snapshot, then every change. A page that falls too far behind is
/// disconnected (its browser reconnects and gets a new snapshot); nothing waits for it.
async fn events(
    State(shared): State<Shared>,
) -> Sse<impl tokio_stream::Stream<Item = Result<SseEvent, Infallible>>> {
    let (snapshot, updates) = shared.board.subscribe();
    let live = BroadcastStream::new(updates)
        .take_while(Result::is_ok)
        .filter_map(Result::ok);
    let stream = tokio_stream::once(snapshot)
        .chain(live)
        .map(|update| Ok(SseEvent::default().event(update.name).data(&*update.data)));
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The listener with a cap on open connections.
struct Capped {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl axum::serve::Listener for Capped {
    type Io = CappedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("dashboard: accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    return (
                        CappedStream {
                            stream,
                            _permit: permit,
                        },
                        addr,
                    );
                }
                Err(_) => drop(stream),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection holding its place under the cap until it closes.
struct CappedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for CappedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
