//! The deployment artifacts say what the service accepts: the Kubernetes ConfigMap's
//! `hashsieve.toml` with the example overlay's partner Secret loads as a valid config, and the
//! timings it sets fit the StatefulSet's (the image and the manifests themselves are checked
//! by `scripts/image_smoke.sh` and `scripts/check_deploy.sh`, which CI runs).

use hashsieve::config::{Config, Source};

use crate::util::repo;

#[test]
fn the_kubernetes_config_and_secret_make_a_valid_config() {
    let deploy = repo().join("deploy/kubernetes");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        deploy.join("base/hashsieve.toml"),
        dir.path().join("hashsieve.toml"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::copy(
        deploy.join("overlays/example/partners.toml"),
        dir.path().join("keys/partners.toml"),
    )
    .unwrap();
    let config = Config::load(&dir.path().join("hashsieve.toml")).unwrap();
    assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
    assert!(!config.partners.is_empty() && !config.admins.is_empty());
    assert!(matches!(config.lists[0].source, Source::S3 { .. }));
    // The state dir and audit log are on the replica's volume.
    assert!(config.state_dir.starts_with("/var/lib/hashsieve"));
    assert!(config.audit_log.starts_with("/var/lib/hashsieve"));
    // SIGTERM to exit: the grace and the drain fit in terminationGracePeriodSeconds.
    let sts = std::fs::read_to_string(deploy.join("base/statefulset.yaml")).unwrap();
    let grace: u64 = sts
        .lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let needed = config.limits.shutdown_grace_ms + config.limits.request_timeout_ms;
    assert!(needed < grace * 1000, "{needed} ms against {grace} s");
    // The image runs what the StatefulSet says.
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains(r#"CMD ["serve", "--config", "/etc/hashsieve/hashsieve.toml"]"#));
    assert!(sts.contains(r#"args: ["serve", "--config", "/etc/hashsieve/hashsieve.toml"]"#));
}
