//! `trunkbench sip` end to end at a load any machine carries: two low-rate steps of calls and
//! of digest REGISTERs, through Trunkline (`trunkline up`, built here) and Kamailio, with
//! sipp — every call completes, nothing fails, every figure is filled in, and the summary
//! carries both targets and the ratio. The capacity search itself is the full
//! `trunkbench sip` (perf/README.md), not a test.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use serde_json::Value;

fn installed(paths: &[&str]) -> bool {
    paths.iter().any(|p| std::path::Path::new(p).exists())
}

#[test]
fn sip_bench_runs_both_targets_and_modes() {
    let kamailio = installed(&["/usr/sbin/kamailio", "/usr/bin/kamailio"]);
    let sipp = installed(&["/usr/bin/sipp", "/usr/local/bin/sipp"]);
    if !kamailio || !sipp {
        // tests/run.sh installs kamailio and sip-tester: in CI their absence is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "kamailio ({kamailio}) or sipp ({sipp}) not installed in CI"
        );
        eprintln!("SKIP: kamailio or sipp not installed (apt-get install kamailio sip-tester)");
        return;
    }
    let trunkline = e2e::binaries(&["trunkline"]).remove(0);
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let run_dir = std::env::temp_dir().join(format!("trunkbench-sip-smoke-{}", std::process::id()));
    let t0 = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_trunkbench"))
        .arg("sip")
        .args(["--targets", "trunkline,kamailio", "--mode", "both"])
        .args(["--rates", "20,40", "--seconds", "1", "--hold-ms", "100"])
        .args([
            "--users",
            "40",
            "--port-base",
            "26500",
            "--max-duration",
            "100",
        ])
        .arg("--proxy-cpu")
        .arg((cpus - 1).to_string())
        .arg("--trunkline")
        .arg(&trunkline)
        .arg("--run-dir")
        .arg(&run_dir)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}\n({:.1} s)", t0.elapsed().as_secs_f64());
    assert!(out.status.success(), "trunkbench sip failed: {stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<&Value> = lines.iter().filter(|v| v["bench"] == "sip_step").collect();
    for target in ["trunkline", "kamailio"] {
        for mode in ["calls", "register"] {
            let mine: Vec<&&Value> = steps
                .iter()
                .filter(|s| s["target"] == target && s["mode"] == mode)
                .collect();
            assert_eq!(mine.len(), 2, "{target} {mode}: two steps ran");
            for s in mine {
                let planned = s["planned"].as_u64().unwrap();
                assert!(planned >= 20, "{s}");
                assert_eq!(s["completed"].as_u64().unwrap(), planned, "{s}");
                assert_eq!(s["failed"].as_u64().unwrap(), 0, "{s}");
                assert_eq!(s["failed_pct"].as_f64().unwrap(), 0.0, "{s}");
                assert!(s["achieved_rate"].as_f64().unwrap() > 0.0, "{s}");
                assert!(!s["killed"].as_bool().unwrap(), "{s}");
                let lat = s["latency_us"].as_object().unwrap();
                assert_eq!(lat.len(), 2, "{s}");
                for (_, l) in lat {
                    let (p50, p99) = (l["p50"].as_u64().unwrap(), l["p99"].as_u64().unwrap());
                    assert!(p50 > 0 && p50 <= p99, "{s}");
                }
                assert!(s["proxy_cpu_us_per_call"].as_f64().unwrap() >= 0.0, "{s}");
            }
        }
    }
    let summary: Vec<&Value> = lines.iter().filter(|v| v["bench"] == "sip").collect();
    assert_eq!(summary.len(), 4, "a summary per target and mode");
    for mode in ["calls", "register"] {
        for target in ["trunkline", "kamailio"] {
            let s = summary
                .iter()
                .find(|s| s["target"] == target && s["mode"] == mode)
                .unwrap_or_else(|| panic!("{target} {mode} in the summary"));
            assert_eq!(s["best_rate"].as_f64().unwrap(), 40.0, "{s}");
            let r = s["ratio_rate"].as_f64().unwrap();
            assert!((r - 1.0).abs() < 1e-9, "both carry the top rate: {s}");
            // Present; null only when a CPU figure stayed below the clock tick at this load.
            assert!(s.get("ratio_projected_per_core").is_some(), "{s}");
            assert!(s["cpu_us_per_call"].as_f64().is_some(), "{s}");
        }
    }
    let _ = std::fs::remove_dir_all(&run_dir);
}
