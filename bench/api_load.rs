//! XML-RPC load generator for `bench/api.sh`: N concurrent clients, each on its own keep-alive
//! HTTP/1.1 connection, send one call after another for a fixed time and record each call's
//! latency. Prints calls/s, p50, p99 and the number of faults; only calls that finish inside
//! the window count. Works against any XML-RPC server (nhn, and the Python baseline in
//! `bench/baseline.py`).
//!
//! `cargo bench --bench api_load -- URL METHOD AUTH ARGS_XML CONCURRENCY SECONDS`
//! `METHOD` `alloc` runs allocateVolume + deallocateVolume pairs instead of one method.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Target {
    authority: String,
    path: String,
}

fn call_xml(method: &str, auth: &str, args_xml: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>{method}</methodName><params>\
         <param><value><string>{auth}</string></value></param>\
         <param><value><struct>{args_xml}</struct></value></param></params></methodCall>"
    )
}

fn member(name: &str, value: &str) -> String {
    format!("<member><name>{name}</name><value>{value}</value></member>")
}

/// One call on an open connection; returns the response body.
async fn call(
    conn: &mut BufReader<TcpStream>,
    target: &Target,
    body: &str,
) -> std::io::Result<String> {
    let req = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
        target.path,
        target.authority,
        body.len()
    );
    conn.get_mut().write_all(req.as_bytes()).await?;
    let mut len = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut buf = vec![0u8; len];
    conn.read_exact(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn extract<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("<name>{name}</name><value><string>");
    let start = body.find(&key)? + key.len();
    let end = body[start..].find('<')? + start;
    Some(&body[start..end])
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [url, method, auth, args_xml, concurrency, seconds] = args.as_slice() else {
        eprintln!("usage: api_load URL METHOD AUTH ARGS_XML CONCURRENCY SECONDS");
        std::process::exit(2);
    };
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let target = Arc::new(Target {
        authority: authority.to_owned(),
        path: if path.is_empty() {
            "/".into()
        } else {
            path.to_owned()
        },
    });
    let concurrency: usize = concurrency.parse().expect("concurrency");
    let duration = Duration::from_secs(seconds.parse().expect("seconds"));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let target = target.clone();
        let (method, auth, args_xml) = (method.clone(), auth.clone(), args_xml.clone());
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(&target.authority)
                .await
                .expect("connect");
            stream.set_nodelay(true).ok();
            let mut conn = BufReader::new(stream);
            let mut latencies = Vec::new();
            let mut faults = 0u64;
            let body = call_xml(&method, &auth, &args_xml);
            let alloc = call_xml("allocateVolume", &auth, &member("sizeGB", "<int>30</int>"));
            while started.elapsed() < duration {
                let t = Instant::now();
                if method == "alloc" {
                    let a = call(&mut conn, &target, &alloc).await.expect("call");
                    let Some(vol) = extract(&a, "volumeId") else {
                        faults += 1;
                        continue;
                    };
                    let d = call_xml(
                        "deallocateVolume",
                        &auth,
                        &member("volumeId", &format!("<string>{vol}</string>")),
                    );
                    let r = call(&mut conn, &target, &d).await.expect("call");
                    faults += u64::from(r.contains("<fault>"));
                } else {
                    let r = call(&mut conn, &target, &body).await.expect("call");
                    faults += u64::from(r.contains("<fault>"));
                }
                // Only calls finished inside the window count, so that a server with slow
                // stragglers is not credited for the time it takes to answer them.
                if started.elapsed() <= duration {
                    latencies.push(t.elapsed().as_micros() as u64);
                }
            }
            (latencies, faults)
        }));
    }
    let mut all = Vec::new();
    let mut faults = 0;
    for t in tasks {
        let (l, f) = t.await.expect("client task");
        all.extend(l);
        faults += f;
    }
    let elapsed = duration.as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let unit = if method == "alloc" { "pairs" } else { "calls" };
    println!(
        "{method}: {:.0} {unit}/s, p50 {:.2} ms, p99 {:.2} ms, {} {unit}, {faults} faults, {concurrency} clients, {elapsed:.1} s",
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        all.len()
    );
}
