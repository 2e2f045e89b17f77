use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn admin_logs_in_and_reads_me() {
    let app = TestApp::spawn().await;
    let response = app.get("/auth/me", &app.admin_token).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["username"], "admin");
    assert!(body["permissions"].as_array().unwrap().contains(&json!("users:admin")));
}
