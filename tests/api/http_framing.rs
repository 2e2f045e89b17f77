//! HTTP/1.1 message framing, tested over a raw TCP connection because a
//! client library will not send ambiguous or malformed framing: conflicting
//! `Content-Length` and `Transfer-Encoding`, invalid lengths, oversized
//! headers and chunked bodies over the size limit.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

/// Maximum wait for a response and for the server to close the connection.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What came back on one connection.
struct Exchange {
    /// Every byte received before the server closed the connection.
    received: Vec<u8>,
    /// Whether the server closed the connection within [`READ_TIMEOUT`].
    closed: bool,
}

impl Exchange {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }

    /// Status codes of every response status line received.
    fn statuses(&self) -> Vec<u16> {
        let text = self.text();
        text.split("\r\n")
            .filter_map(|line| {
                line.strip_prefix("HTTP/1.1 ")
                    .or_else(|| line.strip_prefix("HTTP/1.0 "))
            })
            .filter_map(|rest| rest.get(..3).and_then(|code| code.parse().ok()))
            .collect()
    }

    fn first_status(&self) -> Option<u16> {
        self.statuses().first().copied()
    }
}

fn server_address(app: &TestApp) -> String {
    app.base_url
        .strip_prefix("http://")
        .expect("plain HTTP base URL")
        .to_string()
}

/// Sends `request` on a new connection and reads until the server closes it
/// or [`READ_TIMEOUT`] passes. A reset after a response still counts as
/// closed, because a server that stops reading may reset the connection.
async fn exchange(app: &TestApp, request: &[u8]) -> Exchange {
    let mut stream = TcpStream::connect(server_address(app))
        .await
        .expect("connect to server");
    // The server may stop reading part way through an oversized request, so
    // a failed write is expected there and the response is still read.
    let _ = stream.write_all(request).await;
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    let closed = loop {
        match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buffer)).await {
            Err(_) => break false,
            Ok(Ok(0)) => break true,
            Ok(Ok(count)) => received.extend_from_slice(&buffer[..count]),
            Ok(Err(_)) => break true,
        }
    };
    Exchange { received, closed }
}

async fn assert_health(app: &TestApp) {
    let response = app.client.get(app.url("/health")).send().await.expect("health request");
    assert_eq!(response.status(), StatusCode::OK, "server still answers /health");
}

/// Builds a POST with both framing headers whose chunked body ends at once
/// (`0\r\n\r\n`) and is followed by a `GET /health`. By `Content-Length` the
/// GET is part of the body, and by `Transfer-Encoding` it is a second request.
fn smuggling_request(host: &str, content_length_first: bool) -> Vec<u8> {
    let smuggled = format!("GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let body = format!("0\r\n\r\n{smuggled}");
    let length = format!("Content-Length: {}\r\n", body.len());
    let chunked = "Transfer-Encoding: chunked\r\n";
    let (first, second) = if content_length_first {
        (length.as_str(), chunked)
    } else {
        (chunked, length.as_str())
    };
    format!("POST /api/v1/registry/entries HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{first}{second}\r\n{body}").into_bytes()
}

#[tokio::test]
async fn length_and_chunked_not_smuggled() {
    let app = TestApp::spawn().await;
    let host = server_address(&app);

    for content_length_first in [true, false] {
        let result = exchange(&app, &smuggling_request(&host, content_length_first)).await;

        let statuses = result.statuses();
        assert!(
            result.closed,
            "connection left open (Content-Length first: {content_length_first})"
        );
        assert_eq!(
            statuses.len(),
            1,
            "exactly one response, got {statuses:?} (Content-Length first: {content_length_first})"
        );
        assert!(
            !result.text().contains("\"status\":\"ok\""),
            "the smuggled /health request was answered"
        );
    }

    assert_health(&app).await;
}

#[tokio::test]
#[ignore = "known limitation: hyper drops Content-Length when Transfer-Encoding is chunked, serves the body as chunked and closes the connection, so the 400 cannot be sent"]
async fn length_and_chunked_gets_400() {
    let app = TestApp::spawn().await;
    let host = server_address(&app);

    for content_length_first in [true, false] {
        let result = exchange(&app, &smuggling_request(&host, content_length_first)).await;

        assert_eq!(
            result.first_status(),
            Some(400),
            "ambiguous framing rejected (Content-Length first: {content_length_first}): {}",
            result.text()
        );
    }
}

#[tokio::test]
async fn malformed_content_length_gets_400() {
    let app = TestApp::spawn().await;
    let host = server_address(&app);
    let cases = [
        ("letters", "Content-Length: abc\r\n"),
        ("negative", "Content-Length: -1\r\n"),
        ("plus sign", "Content-Length: +2\r\n"),
        ("two values in one header", "Content-Length: 2, 3\r\n"),
        ("two different headers", "Content-Length: 2\r\nContent-Length: 3\r\n"),
        ("overflow", "Content-Length: 99999999999999999999999\r\n"),
        ("empty", "Content-Length: \r\n"),
    ];

    for (label, headers) in cases {
        let request = format!("POST /api/v1/registry/entries HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{headers}\r\n{{}}");

        let result = exchange(&app, request.as_bytes()).await;

        assert_eq!(result.first_status(), Some(400), "{label}: {}", result.text());
        assert!(result.closed, "{label}: connection left open");
    }

    assert_health(&app).await;
}

#[tokio::test]
async fn unsupported_transfer_encoding_gets_400() {
    let app = TestApp::spawn().await;
    let host = server_address(&app);

    for encoding in ["gzip", "chunked, gzip", "identity", "xchunked"] {
        let request = format!("POST /api/v1/registry/entries HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: {encoding}\r\n\r\n0\r\n\r\n");

        let result = exchange(&app, request.as_bytes()).await;

        assert_eq!(
            result.first_status(),
            Some(400),
            "Transfer-Encoding `{encoding}`: {}",
            result.text()
        );
    }

    assert_health(&app).await;
}

#[tokio::test]
async fn oversized_header_gets_431_or_400() {
    let app = TestApp::spawn().await;
    let host = server_address(&app);
    let one_large = format!("X-Filler: {}\r\n", "a".repeat(64 * 1024));
    let many_small: String = (0..2000)
        .map(|index| format!("X-Filler-{index}: {}\r\n", "b".repeat(30)))
        .collect();
    let long_target = format!("/health?{}", "c".repeat(64 * 1024));

    for (label, target, headers) in [
        ("one 64 KB header", "/health", one_large.as_str()),
        ("2000 headers", "/health", many_small.as_str()),
        ("64 KB request target", long_target.as_str(), ""),
    ] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n");

        let result = exchange(&app, request.as_bytes()).await;

        let status = result.first_status();
        assert!(
            matches!(status, Some(431) | Some(400) | Some(414)),
            "{label}: got {status:?}"
        );
        assert!(result.closed, "{label}: connection left open");
    }

    assert_health(&app).await;
}

#[tokio::test]
#[ignore = "known limitation: a malformed Content-Length is answered by hyper with a bodiless 400 before the request reaches the application"]
async fn framing_errors_get_problem_documents() {
    let app = TestApp::spawn().await;
    let host = server_address(&app);
    let oversized_header = format!(
        "GET /health HTTP/1.1\r\nHost: {host}\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let invalid_length =
        format!("POST /api/v1/registry/entries HTTP/1.1\r\nHost: {host}\r\nContent-Length: abc\r\n\r\n{{}}");

    for (label, request) in [
        ("oversized header", oversized_header),
        ("invalid Content-Length", invalid_length),
    ] {
        let result = exchange(&app, request.as_bytes()).await;

        let text = result.text().to_ascii_lowercase();
        assert!(
            text.contains("content-type: application/problem+json"),
            "{label}: not a problem document: {text}"
        );
    }
}

#[tokio::test]
async fn chunked_body_over_limit_gets_413() {
    let app = TestApp::spawn_with(&[("MAX_BODY_BYTES", "2048")]).await;
    let host = server_address(&app);
    let token = &app.admin_token;
    let description = "x".repeat(4000);
    let body = format!("{{\"name\": \"chunked\", \"category\": \"service\", \"description\": \"{description}\"}}");
    let chunks: String = body
        .as_bytes()
        .chunks(500)
        .map(|chunk| format!("{:x}\r\n{}\r\n", chunk.len(), String::from_utf8_lossy(chunk)))
        .collect();
    let request = format!(
        "POST /api/v1/registry/entries HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunks}0\r\n\r\n"
    );

    let result = exchange(&app, request.as_bytes()).await;

    assert_eq!(
        result.first_status(),
        Some(413),
        "a streamed body over the limit: {}",
        result.text()
    );
    assert!(
        result.text().contains("application/problem+json"),
        "413 is a problem document"
    );
    let listed = app
        .get("/api/v1/registry/entries", token)
        .await
        .text()
        .await
        .expect("list body");
    assert!(!listed.contains("\"chunked\""), "nothing was created");
}

#[tokio::test]
async fn chunked_body_under_limit_accepted() {
    let app = TestApp::spawn_with(&[("MAX_BODY_BYTES", "2048")]).await;
    let host = server_address(&app);
    let token = &app.admin_token;
    let body = "{\"name\": \"chunked\", \"category\": \"service\"}";
    let (head, tail) = body.split_at(10);
    let request = format!(
        "POST /api/v1/registry/entries HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{head}\r\n{:x}\r\n{tail}\r\n0\r\n\r\n",
        head.len(),
        tail.len()
    );

    let result = exchange(&app, request.as_bytes()).await;

    assert_eq!(
        result.first_status(),
        Some(201),
        "a valid chunked body: {}",
        result.text()
    );
}

#[tokio::test]
async fn malformed_request_line_gets_4xx() {
    let app = TestApp::spawn().await;
    let requests: [&[u8]; 4] = [
        b"NOT AN HTTP REQUEST\r\n\r\n",
        b"GET /health HTTP/9.9\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
    ];

    for request in requests {
        let result = exchange(&app, request).await;

        let status = result.first_status();
        assert!(
            status.is_some_and(|code| (400..500).contains(&code)) || (result.received.is_empty() && result.closed),
            "{:?}: got {status:?}",
            String::from_utf8_lossy(request)
        );
    }

    assert_health(&app).await;
}
