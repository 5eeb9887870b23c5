use super::*;
use crate::hashset::format::VideoShare;

const KEY: &str = "RWQgl8I0ex2a+NLQjXwyjoRoy9dsoG3+jTWqHAIfeCxSZgB5G9Zdjv2Q";

fn load(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hashsieve.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path)
}

fn err(text: &str) -> String {
    load(text).unwrap_err().to_string()
}

#[test]
fn defaults_and_a_full_file() {
    let c = load("").unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.limits.max_batch, 10_000);
    assert!(c.is_open_demo());
    let c = load(&format!(
        r#"
listen = "0.0.0.0:9000"
[limits]
max_batch = 5
[[lists]]
name = "alpha"
source = "dir:published/alpha"
public_keys = ["{KEY}"]
[[partners]]
name = "isp-one"
key_sha256 = "{}"
lists = ["alpha"]
distance = "coarse"
[[admins]]
name = "ops"
key_sha256 = "{}"
"#,
        "ab".repeat(32),
        "cd".repeat(32)
    ))
    .unwrap();
    assert_eq!(c.limits.max_batch, 5);
    assert_eq!(c.partners[0].distance, DistancePolicy::Coarse);
    assert!(matches!(&c.lists[0].source, Source::Dir(p) if p.ends_with("published/alpha")));
}

#[test]
fn allow_lists_and_operator_thresholds_are_checked() {
    let list = |name: &str, extra: &str| {
        format!(
            "[[lists]]\nname = \"{name}\"\nsource = \"dir:{name}\"\npublic_keys = [\"{KEY}\"]\n{extra}\n"
        )
    };
    let config = load(&format!(
        "{}{}",
        list("alpha", "thresholds = { pdq = 24, dhash = 4 }"),
        list("allow", "suppresses = [\"alpha\"]")
    ))
    .unwrap();
    assert_eq!(
        config.lists[0].thresholds,
        [(HashKind::Pdq, 24), (HashKind::Dhash, 4)]
    );
    assert_eq!(config.lists[1].policy().suppresses, ["alpha"]);
    for (extra, want) in [
        (
            "thresholds = { md5 = 1 }",
            "lists[0].thresholds.md5: md5 is an exact kind",
        ),
        (
            "thresholds = { pdq = 65 }",
            "lists[0].thresholds.pdq: 65 is above",
        ),
        (
            "thresholds = { pdqq = 3 }",
            "lists[0].thresholds.pdqq: unknown hash kind",
        ),
        (
            "suppresses = [\"gamma\"]",
            "lists[0].suppresses[0]: no list named \"gamma\"",
        ),
        (
            "suppresses = [\"alpha\"]",
            "lists[0].suppresses[0]: a list cannot suppress itself",
        ),
    ] {
        let e = err(&format!("{}{}", list("alpha", extra), list("beta", "")));
        assert!(e.contains(want), "{extra}: {e}");
    }
    let chained = err(&format!(
        "{}{}{}",
        list("alpha", ""),
        list("allow", "suppresses = [\"alpha\"]"),
        list("meta", "suppresses = [\"allow\"]")
    ));
    assert!(
        chained.contains("lists[2].suppresses[0]: \"allow\" is itself an allow list"),
        "{chained}"
    );
}

#[test]
fn every_error_names_the_key() {
    assert!(err("lisen = \"x\"").contains("unknown field `lisen`"));
    assert!(err("[limits]\nmax_batchh = 1").contains("max_batchh"));
    assert!(err("listen = \"nowhere\"").contains("listen: \"nowhere\" is not an address"));
    assert!(err("[limits]\nmax_batch = 0").contains("limits.max_batch: must be greater"));
    let list = |extra: &str| {
        format!("[[lists]]\nname = \"a\"\nsource = \"dir:x\"\npublic_keys = [\"{KEY}\"]\n{extra}")
    };
    assert!(err(&format!("{}\n{}", list(""), list(""))).contains("lists[1].name"));
    // A name no hash set can carry (sets' names are lower case) is refused here, not by
    // every update for ever after.
    for name in ["Alpha", "a b", "-a", &"a".repeat(65)] {
        let e = err(&list("").replace("name = \"a\"", &format!("name = \"{name}\"")));
        assert!(
            e.contains("lists[0].name") && e.contains("a-z"),
            "{name}: {e}"
        );
    }
    assert!(err(&list("").replace("dir:x", "ftp://x")).contains("lists[0].source: \"ftp://x\""));
    assert!(
        err(&list("").replace("dir:x", "http://lists.example.org/a/"))
            .contains("plain http:// only to this machine")
    );
    assert!(load(&list("").replace("dir:x", "http://127.0.0.1:9/a")).is_ok());
    assert!(
        err(&list("").replace("dir:x", "http://127.0.0.1@lists.example.org/a"))
            .contains("plain http:// only to this machine")
    );
    assert!(err(&list("").replace("dir:x", "https://")).contains("not a URL"));
    assert!(err(&list("").replace("dir:x", "https://h.example/a?x=1")).contains("no query"));
    assert!(load(&list("").replace("dir:x", "https://lists.example.org/a")).is_ok());
    assert!(
        err(&list("").replace(KEY, "nope")).contains("lists[0].public_keys[0]: not a minisign")
    );
    let partner = |digest: &str, lists: &str| {
        format!(
            "{}\n[[partners]]\nname = \"p\"\nkey_sha256 = \"{digest}\"\nlists = [{lists}]\n",
            list("")
        )
    };
    assert!(err(&partner("xyz", "\"a\"")).contains("partners[0].key_sha256: expected the SHA-256"));
    assert!(
        err(&partner(&"ab".repeat(32), "\"zz\""))
            .contains("partners[0].lists[0]: no list named \"zz\"")
    );
    assert!(
        err(&format!(
            "{}[[admins]]\nname = \"o\"\nkey_sha256 = \"{}\"\n",
            partner(&"ab".repeat(32), "\"a\""),
            "ab".repeat(32)
        ))
        .contains("admins[0].key_sha256: admin keys must differ")
    );
    assert!(err("listen = \"0.0.0.0:8080\"").contains("not a loopback address"));
    // Keys from a file of their own (a Secret), merged with the file's; its errors name it.
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("hashsieve.toml");
    std::fs::write(
        &main,
        format!(
            "listen = \"0.0.0.0:8080\"\npartners_file = \"keys/partners.toml\"\n{}",
            list("")
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    let keys = dir.path().join("keys/partners.toml");
    std::fs::write(
        &keys,
        format!(
            "[[partners]]\nname = \"p\"\nkey_sha256 = \"{}\"\nlists = [\"a\"]\n",
            "ab".repeat(32)
        ),
    )
    .unwrap();
    let c = Config::load(&main).unwrap();
    assert_eq!(c.partners[0].name, "p");
    std::fs::write(&keys, "[[partners]]\nnmae = \"p\"\n").unwrap();
    let e = Config::load(&main).unwrap_err().to_string();
    assert!(e.contains("partners.toml") && e.contains("nmae"), "{e}");
    // `serve --listen` goes through the same rule, for a file and for the demo.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hashsieve.toml");
    std::fs::write(&path, "").unwrap();
    let anywhere: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let e = Config::load_listening(&path, Some(anywhere)).unwrap_err();
    assert!(
        e.to_string()
            .contains("listen: 0.0.0.0:8080 is not a loopback"),
        "{e}"
    );
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    assert_eq!(
        Config::load_listening(&path, Some(local)).unwrap().listen,
        local
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(Config::demo(repo, Some(anywhere)).is_err());
    assert_eq!(Config::demo(repo, Some(local)).unwrap().listen, local);
    assert!(err("tls_cert = \"c.pem\"").contains("tls_key: tls_cert is set"));
    assert!(err("tls_key = \"k.pem\"").contains("tls_cert: tls_key is set"));
}

#[test]
fn an_operators_video_rule_is_checked_and_only_raises_the_sets() {
    let list = |extra: &str| {
        format!(
            "[[lists]]\nname = \"alpha\"\nsource = \"dir:alpha\"\npublic_keys = [\"{KEY}\"]\n{extra}\n"
        )
    };
    let config = load(&list(
        "video = { query_percent = 90, compared_percent = 12.5 }",
    ))
    .unwrap();
    let mine = config.lists[0].video_share.unwrap();
    assert_eq!(
        (mine.query_percent(), mine.compared_percent()),
        (90.0, 12.5)
    );
    let policy = config.lists[0].policy();
    // The set says 70% / 20%: each minimum is the higher of the two.
    let set = VideoShare::from_percents(70.0, 20.0).unwrap();
    let rule = policy.video_share(set);
    assert_eq!(
        (rule.query_percent(), rule.compared_percent()),
        (90.0, 20.0)
    );
    // Without one, the set's rule stands.
    let plain = load(&list("")).unwrap();
    assert_eq!(plain.lists[0].policy().video_share(set), set);
    for (extra, want) in [
        ("video = { query_percent = 101 }", "lists[0].video:"),
        ("video = { compared_percent = -1 }", "lists[0].video:"),
        ("video = { query_percent = 80, frames = 3 }", "frames"),
    ] {
        let e = err(&list(extra));
        assert!(e.contains(want), "{extra}: {e}");
    }
    assert!(err("[limits]\nmax_video_frames = 0").contains("limits.max_video_frames"));
}

#[test]
fn coarse_distances_round_up_to_eight() {
    let c = DistancePolicy::Coarse;
    assert_eq!(
        [0, 1, 8, 9, 31].map(|d| c.apply(d)),
        [Some(0), Some(8), Some(8), Some(16), Some(32)]
    );
    assert_eq!(DistancePolicy::None.apply(3), None);
}
