//! URL lookups in privacy mode (4-byte prefixes, full hashes compared here) against full-hash
//! queries, through a running service: the verdicts must be the same; prints URLs/s and bytes
//! on the wire per URL (request and response bodies) for each mode, one URL per request (as
//! the Squid helper asks) and 100 per request (as `url check` does).
//! `scripts/url_privacy.sh` builds the list, serves it and runs this.
//!
//!     url_privacy BASE_URL URLS_FILE [API_KEY]

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use hashsieve::urls::Canonical;
use serde_json::{Value, json};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, base, file, rest @ ..] = args.as_slice() else {
        eprintln!("usage: url_privacy BASE_URL URLS_FILE [API_KEY]");
        std::process::exit(2);
    };
    let key = rest.first().cloned();
    let text = std::fs::read_to_string(file).expect("read the URLs");
    let urls: Vec<Canonical> = text
        .lines()
        .map(|l| Canonical::parse_str(l).expect("a valid URL"))
        .collect();
    let http = reqwest::blocking::Client::new();
    let post = |path: &str, body: &Value| -> (Value, usize, usize) {
        let sent = serde_json::to_vec(body).unwrap();
        let mut r = http
            .post(format!("{base}{path}"))
            .header("content-type", "application/json");
        if let Some(k) = &key {
            r = r.bearer_auth(k);
        }
        let reply = r.body(sent.clone()).send().unwrap();
        assert!(reply.status().is_success(), "{path}: {}", reply.status());
        let bytes = reply.bytes().unwrap();
        (
            serde_json::from_slice(&bytes).unwrap(),
            sent.len(),
            bytes.len(),
        )
    };
    println!("{} URLs", urls.len());
    for per_request in [1usize, 100] {
        let mut verdicts: Vec<Vec<BTreeSet<String>>> = Vec::new();
        for privacy in [false, true] {
            let started = Instant::now();
            let (mut sent, mut received, mut requests) = (0usize, 0usize, 0usize);
            let mut found: Vec<BTreeSet<String>> = Vec::with_capacity(urls.len());
            for batch in urls.chunks(per_request) {
                let expressions: Vec<Vec<String>> = batch
                    .iter()
                    .map(|u| {
                        u.expressions()
                            .iter()
                            .map(|e| hashsieve::kinds::hex_lower(&e.hash()))
                            .collect()
                    })
                    .collect();
                requests += 1;
                if privacy {
                    let prefixes: BTreeSet<&str> =
                        expressions.iter().flatten().map(|h| &h[..8]).collect();
                    let (answer, s, r) =
                        post("/v1/match/url-prefixes", &json!({ "prefixes": prefixes }));
                    sent += s;
                    received += r;
                    let mut listed: HashMap<&str, Vec<String>> = HashMap::new();
                    for e in answer["entries"].as_array().unwrap() {
                        listed
                            .entry(e["hash"].as_str().unwrap())
                            .or_default()
                            .push(e["ref"].as_str().unwrap().to_owned());
                    }
                    for es in &expressions {
                        found.push(
                            es.iter()
                                .flat_map(|h| listed.get(h.as_str()).into_iter().flatten())
                                .cloned()
                                .collect(),
                        );
                    }
                } else {
                    let queries: Vec<Value> = expressions
                        .iter()
                        .flatten()
                        .map(|h| json!({"kind": "url", "hash": h}))
                        .collect();
                    let (answer, s, r) = post("/v1/match", &json!({ "queries": queries }));
                    sent += s;
                    received += r;
                    let mut results = answer["results"].as_array().unwrap().iter();
                    for es in &expressions {
                        let mut refs = BTreeSet::new();
                        for _ in es {
                            let v = results.next().expect("a verdict per query");
                            for m in v["matches"].as_array().unwrap() {
                                refs.insert(m["ref"].as_str().unwrap().to_owned());
                            }
                        }
                        found.push(refs);
                    }
                }
            }
            let seconds = started.elapsed().as_secs_f64();
            let listed = found.iter().filter(|f| !f.is_empty()).count();
            println!(
                "{:<8} {per_request:>3} URL/request: {listed} listed, {:.0} URLs/s, {:.1} bytes/URL sent, {:.1} received ({requests} requests, {seconds:.2} s)",
                if privacy { "privacy" } else { "full" },
                urls.len() as f64 / seconds,
                sent as f64 / urls.len() as f64,
                received as f64 / urls.len() as f64,
            );
            verdicts.push(found);
        }
        assert_eq!(
            verdicts[0], verdicts[1],
            "privacy mode and full hashes disagree"
        );
        println!("same verdicts for every URL at {per_request} per request");
    }
}
