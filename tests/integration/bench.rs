//! `mpgw bench`: the real binary against an in-process gateway, every size scaled down so the
//! whole run takes seconds; the JSON must carry every measurement, each positive.

use std::time::Duration;

use crate::harness::{ACCESS_KEY, SECRET_KEY, Store, TestGateway};

const BIN: &str = env!("CARGO_BIN_EXE_mpgw");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_every_metric() {
    let gw = TestGateway::start_with(Store::Embedded, |cfg| cfg.min_part_size = 1).await;
    let out_dir = tempfile::tempdir().expect("tempdir");
    let json = out_dir.path().join("bench.json");
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["bench", "--endpoint", &gw.endpoint()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        // Scaled by 1/16: 8 MiB object, 16 MiB big one, 32 cycles, 64 puts, 16 MiB of disk.
        .args([
            "--scale",
            "0.0625",
            "--size",
            "128MiB",
            "--big-size",
            "256MiB",
        ])
        .args(["--part-size", "1MiB", "--concurrency", "1,4"])
        .args(["--parts-max", "200", "--tiny-part", "1KiB"])
        .args(["--range-size", "256KiB", "--ranges", "512"])
        .args(["--cycles", "512", "--puts", "1024", "--disk-size", "256MiB"])
        .args(["--server-pid", &std::process::id().to_string()])
        .args(["--tus-token", &gw.legacy_token(ACCESS_KEY)])
        .arg("--data-dir")
        .arg(gw.data_dir())
        .arg("--json")
        .arg(&json)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("bench finished within 120 s")
        .expect("bench ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("of bound"), "no table:\n{stdout}");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON written")).expect("JSON");
    let metrics = report["metrics"].as_array().expect("metrics");
    let names: Vec<&str> = metrics
        .iter()
        .map(|m| m["name"].as_str().expect("name"))
        .collect();
    for want in [
        "upload_c1",
        "upload_c4",
        "tus_c1",
        "tus_c4",
        "complete_64p",
        "complete_64p_big",
        "upload_big",
        "complete_20p",
        "complete_200p",
        "list_parts_200p",
        "get",
        "get_range",
        "get_range_ops",
        "small_cycles",
        "put_small",
        "server_peak_rss",
        "server_rss",
        "limit_disk_write",
        "limit_disk_read",
        "limit_md5",
        "limit_loopback",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for m in metrics {
        let v = m["value"].as_f64().unwrap_or(0.0);
        assert!(v > 0.0 && v.is_finite(), "not positive: {m}");
        if let Some(f) = m["fraction"].as_f64() {
            assert!(f > 0.0, "fraction not positive: {m}");
        }
    }
    assert_eq!(report["size"], 8 << 20);
    assert_eq!(report["big_size"], 16 << 20);
}
