use super::*;

fn canon(url: &[u8]) -> String {
    Canonical::parse(url)
        .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(url)))
        .to_string()
}

/// Every canonicalisation example Safe Browsing publishes (developers.google.com,
/// "URLs and hashing", v4), in its order.
#[test]
fn safe_browsing_canonicalization_examples() {
    let cases: &[(&[u8], &str)] = &[
        (b"http://host/%25%32%35", "http://host/%25"),
        (b"http://host/%25%32%35%25%32%35", "http://host/%25%25"),
        (b"http://host/%2525252525252525", "http://host/%25"),
        (b"http://host/asdf%25%32%35asd", "http://host/asdf%25asd"),
        (b"http://host/%%%25%32%35asd%%", "http://host/%25%25%25asd%25%25"),
        (b"http://www.google.com/", "http://www.google.com/"),
        (
            b"http://%31%36%38%2e%31%38%38%2e%39%39%2e%32%36/%2E%73%65%63%75%72%65/%77%77%77%2E%65%62%61%79%2E%63%6F%6D/",
            "http://168.188.99.26/.secure/www.ebay.com/",
        ),
        (
            b"http://195.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/",
            "http://195.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/",
        ),
        (
            b"http://host%23.com/%257Ea%2521b%2540c%2523d%2524e%25f%255E00%252611%252A22%252833%252944_55%252B",
            "http://host%23.com/~a!b@c%23d$e%25f^00&11*22(33)44_55+",
        ),
        (b"http://3279880203/blah", "http://195.127.0.11/blah"),
        (b"http://www.google.com/blah/..", "http://www.google.com/"),
        (b"www.google.com/", "http://www.google.com/"),
        (b"www.google.com", "http://www.google.com/"),
        (b"http://www.evil.com/blah#frag", "http://www.evil.com/blah"),
        (b"http://www.GOOgle.com/", "http://www.google.com/"),
        (b"http://www.google.com.../", "http://www.google.com/"),
        (b"http://www.google.com/foo\tbar\rbaz\n2", "http://www.google.com/foobarbaz2"),
        (b"http://www.google.com/q?", "http://www.google.com/q?"),
        (b"http://www.google.com/q?r?", "http://www.google.com/q?r?"),
        (b"http://www.google.com/q?r?s", "http://www.google.com/q?r?s"),
        (b"http://evil.com/foo#bar#baz", "http://evil.com/foo"),
        (b"http://evil.com/foo;", "http://evil.com/foo;"),
        (b"http://evil.com/foo?bar;", "http://evil.com/foo?bar;"),
        (b"http://\x01\x80.com/", "http://%01%80.com/"),
        (b"http://notrailingslash.com", "http://notrailingslash.com/"),
        (b"http://www.gotaport.com:1234/", "http://www.gotaport.com/"),
        (b"  http://www.google.com/  ", "http://www.google.com/"),
        (b"http:// leadingspace.com/", "http://%20leadingspace.com/"),
        (b"http://%20leadingspace.com/", "http://%20leadingspace.com/"),
        (b"%20leadingspace.com/", "http://%20leadingspace.com/"),
        (b"https://www.securesite.com/", "https://www.securesite.com/"),
        (b"http://host.com/ab%23cd", "http://host.com/ab%23cd"),
        (
            b"http://host.com//twoslashes?more//slashes",
            "http://host.com/twoslashes?more//slashes",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            canon(input),
            *expected,
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

fn texts(url: &str) -> Vec<String> {
    Canonical::parse_str(url)
        .unwrap()
        .expressions()
        .into_iter()
        .map(|e| e.text)
        .collect()
}

/// Safe Browsing's three expression examples, in its order.
#[test]
fn safe_browsing_expression_examples() {
    assert_eq!(
        texts("http://a.b.c/1/2.html?param=1"),
        [
            "a.b.c/1/2.html?param=1",
            "a.b.c/1/2.html",
            "a.b.c/",
            "a.b.c/1/",
            "b.c/1/2.html?param=1",
            "b.c/1/2.html",
            "b.c/",
            "b.c/1/",
        ]
    );
    assert_eq!(
        texts("http://a.b.c.d.e.f.g/1.html"),
        [
            "a.b.c.d.e.f.g/1.html",
            "a.b.c.d.e.f.g/",
            "c.d.e.f.g/1.html",
            "c.d.e.f.g/",
            "d.e.f.g/1.html",
            "d.e.f.g/",
            "e.f.g/1.html",
            "e.f.g/",
            "f.g/1.html",
            "f.g/",
        ]
    );
    assert_eq!(texts("http://1.2.3.4/1/"), ["1.2.3.4/1/", "1.2.3.4/"]);
}

#[test]
fn at_most_five_hosts_by_six_paths() {
    let c = Canonical::parse_str("http://a.b.c.d.e.f.g.h/1/2/3/4/5/6.html?x=1").unwrap();
    let e = c.expressions();
    assert_eq!(c.host_suffixes().len(), MAX_HOSTS);
    assert_eq!(e.len(), 30);
    assert_eq!(
        c.path_prefixes()
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>(),
        [
            "/1/2/3/4/5/6.html?x=1",
            "/1/2/3/4/5/6.html",
            "/",
            "/1/",
            "/1/2/",
            "/1/2/3/"
        ]
    );
    let kinds: Vec<ExpressionKind> = c.path_prefixes().iter().map(|(_, k)| *k).collect();
    use ExpressionKind::*;
    assert_eq!(kinds, [Url, Url, Host, PathPrefix, PathPrefix, PathPrefix]);
    // A two-label host has no suffix but itself; a one-label host neither.
    assert_eq!(
        Canonical::parse_str("http://b.c/").unwrap().host_suffixes(),
        ["b.c"]
    );
    assert_eq!(
        Canonical::parse_str("http://localhost/")
            .unwrap()
            .host_suffixes(),
        ["localhost"]
    );
}

#[test]
fn expression_kinds_of_the_url_itself() {
    let kind = |u: &str| Canonical::parse_str(u).unwrap().expression_kind();
    assert_eq!(kind("example.com"), ExpressionKind::Host);
    assert_eq!(kind("http://example.com/"), ExpressionKind::Host);
    assert_eq!(kind("http://example.com/?q"), ExpressionKind::Url);
    assert_eq!(kind("http://example.com/dir/"), ExpressionKind::Url);
    assert_eq!(kind("http://example.com/a.html"), ExpressionKind::Url);
    // As a lookup sees them: a directory above the URL is a prefix.
    let c = Canonical::parse_str("http://example.com/dir/a.html").unwrap();
    let e = c.expressions();
    assert_eq!(e[2].text, "example.com/dir/");
    assert_eq!(e[2].kind, ExpressionKind::PathPrefix);
    assert_eq!(e[1].text, "example.com/");
    assert_eq!(e[1].kind, ExpressionKind::Host);
}

#[test]
fn ipv4_forms() {
    for (input, expected) in [
        ("http://0xc37f000b/", "195.127.0.11"),
        ("http://0303.0177.0.013/", "195.127.0.11"),
        ("http://0xc3.0x7f.0.11/", "195.127.0.11"),
        ("http://195.127.11/", "195.127.0.11"),
        ("http://195.8323083/", "195.127.0.11"),
        ("http://127.1/", "127.0.0.1"),
        ("http://0/", "0.0.0.0"),
        ("http://1.2.3.4./", "1.2.3.4"),
    ] {
        assert_eq!(
            Canonical::parse_str(input).unwrap().host(),
            expected,
            "{input}"
        );
    }
    // Not addresses: too many parts, a part too large, not digits: ordinary hosts.
    for host in [
        "1.2.3.4.5",
        "256.1.1.1",
        "1.2.3.4294967296",
        "08.1.1.1",
        "1.2.example",
    ] {
        let c = Canonical::parse_str(&format!("http://{host}/")).unwrap();
        assert_eq!(c.host(), host);
        assert!(c.host_suffixes().len() > 1 || !host.contains('.'), "{host}");
    }
}

#[test]
fn idn_hosts_become_punycode() {
    assert_eq!(
        canon("http://bücher.example/".as_bytes()),
        "http://xn--bcher-kva.example/"
    );
    assert_eq!(
        canon("http://BÜCHER.example/".as_bytes()),
        "http://xn--bcher-kva.example/"
    );
    // Escaped UTF-8 is the same host.
    assert_eq!(
        canon(b"http://b%C3%BCcher.example/"),
        "http://xn--bcher-kva.example/"
    );
    // The ideographic full stop separates labels (UTS 46).
    assert_eq!(
        canon("http://www.foo\u{3002}bar.com/".as_bytes()),
        "http://www.foo.bar.com/"
    );
    // Not a name IDN can hold: escaped byte for byte (and stable: punycode would have moved
    // "%22" together into a new escape).
    assert_eq!(
        canon("http://%\u{c0}22%/".as_bytes()),
        "http://%25%C3%8022%25/"
    );
    assert_eq!(canon(b"http://%25%C3%8022%25/"), "http://%25%C3%8022%25/");
    // Invalid UTF-8 is escaped byte for byte.
    assert_eq!(canon(b"http://\xff\xfe.example/"), "http://%FF%FE.example/");
}

#[test]
fn ipv6_hosts() {
    let c = Canonical::parse_str("http://[2001:DB8:0:0::1]:8080/a/").unwrap();
    assert_eq!(c.to_string(), "http://[2001:db8::1]/a/");
    assert_eq!(c.host_suffixes(), ["[2001:db8::1]"]);
    assert_eq!(
        canon(b"http://[::ffff:1.2.3.4]/"),
        "http://[::ffff:1.2.3.4]/"
    );
    assert!(matches!(
        Canonical::parse_str("http://[not-an-address]/"),
        Err(UrlError::BadIpv6 { .. })
    ));
    assert!(matches!(
        Canonical::parse_str("http://[::1/"),
        Err(UrlError::BadIpv6 { .. })
    ));
}

#[test]
fn ports_user_info_and_schemes() {
    assert_eq!(
        canon(b"http://user:pass@example.com:8080/x"),
        "http://example.com/x"
    );
    assert_eq!(canon(b"http://a@b@example.com/"), "http://example.com/");
    assert_eq!(canon(b"HTTPS://Example.COM:/"), "https://example.com/");
    // A proxy's CONNECT target: host and port only.
    assert_eq!(canon(b"example.com:443"), "http://example.com/");
    assert_eq!(canon(b"ftp://example.com/file"), "ftp://example.com/file");
    for bad in [
        "http://example.com:80a/",
        "http://example.com:65536/",
        "http://h:123456/",
    ] {
        assert!(
            matches!(Canonical::parse_str(bad), Err(UrlError::BadPort { .. })),
            "{bad}"
        );
    }
}

#[test]
fn invalid_input_is_a_precise_error() {
    assert_eq!(Canonical::parse(b""), Err(UrlError::Empty));
    assert_eq!(Canonical::parse(b"  \t\n "), Err(UrlError::Empty));
    assert_eq!(Canonical::parse(b"#fragment"), Err(UrlError::Empty));
    assert!(matches!(
        Canonical::parse(b"http:///path"),
        Err(UrlError::NoHost { .. })
    ));
    assert!(matches!(
        Canonical::parse(b"http://.../"),
        Err(UrlError::NoHost { .. })
    ));
    let long = format!("http://example.com/{}", "a".repeat(MAX_URL_BYTES));
    assert_eq!(
        Canonical::parse_str(&long),
        Err(UrlError::TooLong(long.len()))
    );
    let host = format!("http://{}.com/", "a".repeat(2000));
    assert!(matches!(
        Canonical::parse_str(&host),
        Err(UrlError::HostTooLong { .. })
    ));
    let message = Canonical::parse_str("http://example.com:x/")
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("\"x\"") && message.contains("example.com"),
        "{message}"
    );
}

#[test]
fn very_long_urls_are_linear() {
    // Nested escapes that a pass-by-pass unescape would take 30 000 passes over.
    let nested = format!("http://example.com/%25{}", "25".repeat(30_000));
    let started = std::time::Instant::now();
    assert_eq!(canon(nested.as_bytes()), "http://example.com/%25");
    // Generous: a quadratic unescape takes many seconds here.
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let long_path = format!("http://example.com/{}", "a/".repeat(20_000));
    assert_eq!(
        Canonical::parse_str(&long_path)
            .unwrap()
            .expressions()
            .len(),
        5
    );
}

#[test]
fn paths() {
    for (input, expected) in [
        ("http://h.com/a/./b/../c", "http://h.com/a/c"),
        ("http://h.com/a/b/.", "http://h.com/a/b/"),
        ("http://h.com/../../x", "http://h.com/x"),
        ("http://h.com/a/%2e%2e/b", "http://h.com/b"),
        ("http://h.com/a/..b/", "http://h.com/a/..b/"),
        ("http://h.com///", "http://h.com/"),
        ("http://h.com?x", "http://h.com/?x"),
        ("http://h.com/a%2Fb", "http://h.com/a/b"),
        ("http://h.com/%3Fnot-a-query", "http://h.com/?not-a-query"),
    ] {
        assert_eq!(canon(input.as_bytes()), expected, "{input}");
    }
}

/// The one-pass unescape equals unescaping the whole string until it stops changing.
#[test]
fn one_pass_unescape_is_the_fixpoint() {
    fn once(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            if s[i] == b'%'
                && i + 2 < s.len()
                && hex_value(s[i + 1]).is_some()
                && hex_value(s[i + 2]).is_some()
            {
                out.push(hex_value(s[i + 1]).unwrap() << 4 | hex_value(s[i + 2]).unwrap());
                i += 3;
            } else {
                out.push(s[i]);
                i += 1;
            }
        }
        out
    }
    use proptest::prelude::*;
    let alphabet = prop::sample::select(b"%2535aF0g".to_vec());
    proptest!(ProptestConfig::with_cases(4000), |(s in prop::collection::vec(alphabet, 0..24))| {
        let mut fix = s.clone();
        loop {
            let next = once(&fix);
            if next == fix { break; }
            fix = next;
        }
        prop_assert_eq!(unescape_fully(&s), fix);
    });
}

#[test]
fn expression_hashes_are_sha256_of_the_text() {
    let e = &Canonical::parse_str("http://example.com/")
        .unwrap()
        .expressions()[0];
    assert_eq!(e.text, "example.com/");
    assert_eq!(
        crate::kinds::hex_lower(&e.hash()),
        crate::kinds::hex_lower(&Sha256::digest(b"example.com/"))
    );
}

/// Any bytes at all: an answer or an error, never a panic, and a canonical form that is its
/// own canonical form.
#[test]
fn arbitrary_input_never_panics_and_is_idempotent() {
    use proptest::prelude::*;
    let byte = prop::sample::select(b"%2eE5aAf:/@.[]?#\t \x80\xc3\xbc0x1-".to_vec());
    proptest!(ProptestConfig::with_cases(20000), |(s in prop::collection::vec(byte, 0..40))| {
        if let Ok(c) = Canonical::parse(&s) {
            let again = Canonical::parse_str(&c.to_string()).unwrap();
            prop_assert_eq!(again.to_string(), c.to_string());
            prop_assert!(c.expressions().len() <= MAX_HOSTS * 6);
        }
    });
}
