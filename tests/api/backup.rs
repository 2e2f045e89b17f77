//! `hyper-registry backup`: an online SQLite copy taken while the server
//! writes, and a restore by pointing `DATABASE_URL` at the copy.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;

use crate::encryption::DEFAULT_SQLITE;
use crate::helpers::{list_all_entries, TestApp, ADMIN_PASSWORD, JWT_SECRET};

const ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn run_backup(data_dir: &Path, extra: &[(&str, &str)], out: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hyper-registry"));
    command
        .args(["backup", "--out", out.to_str().unwrap()])
        .env_clear()
        .env("DATA_DIR", data_dir)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("JWT_SECRET_KEY", JWT_SECRET)
        .env("ENCRYPTION_KEY", ENCRYPTION_KEY)
        .env("LOG_LEVEL", "error")
        .stdin(Stdio::null());
    for (name, value) in extra {
        command.env(name, value);
    }
    command.output().expect("CLI runs")
}

#[tokio::test]
async fn backup_during_writes_then_restore() {
    let app = Arc::new(TestApp::spawn_with(&[("ENCRYPTION_KEY", ENCRYPTION_KEY), DEFAULT_SQLITE]).await);
    for index in 0..20 {
        app.create_entry(
            &app.admin_token,
            &json!({"name": format!("before-{index}"), "category": "service", "sensitive": {"token": "t"}}),
        )
        .await;
    }

    // Keep writing while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (app, stop, written) = (app.clone(), stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut index = 0;
            while !stop.load(Ordering::Relaxed) {
                app.create_entry(
                    &app.admin_token,
                    &json!({"name": format!("during-{index}"), "category": "service"}),
                )
                .await;
                written.fetch_add(1, Ordering::Relaxed);
                index += 1;
            }
        })
    };
    while written.load(Ordering::Relaxed) < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let out = app.data_dir.path().join("backup.db");
    let data_dir = app.data_dir.path().to_path_buf();
    let output = tokio::task::spawn_blocking({
        let out = out.clone();
        move || run_backup(&data_dir, &[], &out)
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "backup readable by its owner only");
    }

    // Restore: a server on the copy serves the entries written before it.
    let data_path = tempfile::tempdir().unwrap();
    let backup_url = format!("sqlite://{}", out.display());
    let restored = TestApp::spawn_with(&[
        ("ENCRYPTION_KEY", ENCRYPTION_KEY),
        ("DATA_DIR", data_path.path().to_str().unwrap()),
        ("DATABASE_URL", backup_url.as_str()),
    ])
    .await;
    let entries = list_all_entries(&restored, &restored.admin_token).await;
    let names: Vec<&str> = entries.iter().filter_map(|e| e["name"].as_str()).collect();
    for index in 0..20 {
        let name = format!("before-{index}");
        assert!(names.contains(&name.as_str()), "{name} in the copy");
    }
    assert!(
        names.iter().any(|name| name.starts_with("during-")),
        "writes made before the backup started are in the copy"
    );
    let with_secret = entries.iter().find(|e| e["name"] == "before-0").unwrap();
    assert_eq!(with_secret["sensitive"]["token"], "t", "sensitive values decrypt");
}

#[tokio::test]
async fn backup_refuses_to_overwrite() {
    let app = TestApp::spawn_with(&[("ENCRYPTION_KEY", ENCRYPTION_KEY), DEFAULT_SQLITE]).await;
    let out = app.data_dir.path().join("existing.db");
    std::fs::write(&out, b"keep me").unwrap();

    let output = run_backup(app.data_dir.path(), &[], &out);

    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("already exists"));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me", "the file is untouched");
}

#[tokio::test]
async fn backup_records_time_for_check_config() {
    let app = TestApp::spawn_with(&[("ENCRYPTION_KEY", ENCRYPTION_KEY), DEFAULT_SQLITE]).await;
    let out = app.data_dir.path().join("recorded.db");

    let output = run_backup(app.data_dir.path(), &[], &out);

    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let record = std::fs::read_to_string(app.data_dir.path().join("last-backup.json")).unwrap();
    assert!(record.contains("completed_at"), "{record}");
}

#[tokio::test]
async fn backup_of_postgres_points_at_pg_dump() {
    let data_dir = tempfile::tempdir().unwrap();
    let out = data_dir.path().join("never.db");

    // No connection is attempted, so an unreachable address is fine here.
    let output = run_backup(
        data_dir.path(),
        &[("DATABASE_URL", "postgres://registry@127.0.0.1:1/registry")],
        &out,
    );

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("pg_dump"), "{stderr}");
    assert!(stderr.contains("docs/deployment.md"), "{stderr}");
    assert!(!out.exists(), "no file written");
}
