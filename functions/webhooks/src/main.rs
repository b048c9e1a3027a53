//! Lambda entry point: wiring only.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    pipewise::api::serve_lambda::<webhooks::Webhooks>().await
}
