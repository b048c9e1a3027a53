//! The platform stand-in of the tests (X and Instagram as their docs describe them) as a server
//! for `make dev`: `cargo run -p pipewise-tests --bin pipewise-fake-platforms -- 127.0.0.1:9100`,
//! then `X_API_BASE_URL=http://127.0.0.1:9100 INSTAGRAM_API_BASE_URL=http://127.0.0.1:9100 make dev`.
//!
//! It starts with X tokens `x-access-0` / `x-refresh-0` (refresh rotates them) and one Instagram
//! conversation: `ada.l` (Instagram-scoped id `igsid-ada`) wrote an hour ago. It logs each
//! message it accepts and each refresh call.

use std::time::Duration;

use pipewise_tests::fake_social::FakeSocial;

#[tokio::main]
async fn main() {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9100".to_owned());
    let fake = FakeSocial::start_on(&address).await;
    fake.x_tokens("x-access-0", "x-refresh-0");
    fake.instagram_conversation("ada.l", "igsid-ada", 3600);
    println!(
        "platform stand-in on {} (X API and Instagram Graph API)",
        fake.base_url
    );
    println!(
        "  X tokens: access x-access-0, refresh x-refresh-0; Instagram: ada.l wrote an hour ago"
    );
    let (mut messages, mut refreshes) = (0, 0);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for message in fake.sent().iter().skip(messages) {
            println!(
                "  {} message to {}: {:?}",
                message.platform, message.recipient, message.text
            );
        }
        for call in fake.refreshes().iter().skip(refreshes) {
            println!("  {} token refresh", call.platform);
        }
        messages = fake.sent().len();
        refreshes = fake.refreshes().len();
    }
}
