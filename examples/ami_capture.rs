//! Records a real AMI byte stream from the rig for the benchmark and tests:
//! `cargo run --example ami_capture -- fixtures/ami/rig-capture-1.ami [calls]`.
//!
//! Logs in (plain), originates `calls` Local calls spread over every fake-phones
//! behaviour, waits for them to end, hangs up its own legs (by the ChannelIds it set, so
//! other users of a shared rig are left alone) and writes every byte it read, banner
//! included, untouched.

use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BEHAVIOURS: [&str; 7] = [
    "answer",
    "silent",
    "slow",
    "noanswer",
    "busy",
    "congestion",
    "hangup",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args.next().context("usage: ami_capture OUT.ami [calls]")?;
    let calls: usize = args.next().map_or(Ok(42), |n| n.parse())?;
    let port = std::env::var("MEDCALL_RIG_AMI_PORT").unwrap_or_else(|_| "5038".into());
    let secret =
        std::env::var("MEDCALL_RIG_AMI_SECRET").unwrap_or_else(|_| "medcall-rig-secret".into());
    let stream = TcpStream::connect(format!("127.0.0.1:{port}")).await?;
    let (mut reader, mut writer) = stream.into_split();
    let recorder = tokio::spawn(async move {
        let mut captured = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(8), reader.read(&mut chunk)).await
        {
            if n == 0 {
                break;
            }
            captured.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
        captured
    });
    // These values are the tool's own constants, not user input: plain formatting is safe.
    let login = format!(
        "Action: Login\r\nActionID: cap-login\r\nUsername: medcall\r\nSecret: {secret}\r\nEvents: on\r\n\r\n"
    );
    writer.write_all(login.as_bytes()).await?;
    let pid = std::process::id();
    for i in 0..calls {
        let behaviour = BEHAVIOURS
            .get(i % BEHAVIOURS.len())
            .copied()
            .unwrap_or("answer");
        let action = format!(
            "Action: Originate\r\nActionID: cap-{i}\r\nChannel: Local/{behaviour}@fake-phones/n\r\n\
             Application: Wait\r\nData: 4\r\nTimeout: 3000\r\nAsync: true\r\n\
             CallerID: \"Capture {i}\" <{i}>\r\nAccount: capture-{pid}\r\n\
             ChannelId: capture-{pid}-{i}\r\nOtherChannelId: capture-{pid}-{i}-2\r\n\r\n"
        );
        writer.write_all(action.as_bytes()).await?;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    writer
        .write_all(b"Action: CoreShowChannels\r\nActionID: cap-list\r\n\r\n")
        .await?;
    writer
        .write_all(b"Action: Command\r\nActionID: cap-cmd\r\nCommand: core show channels\r\n\r\n")
        .await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    for i in 0..calls {
        let action =
            format!("Action: Hangup\r\nActionID: cap-h{i}\r\nChannel: capture-{pid}-{i}\r\n\r\n");
        writer.write_all(action.as_bytes()).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    writer
        .write_all(b"Action: Logoff\r\nActionID: cap-bye\r\n\r\n")
        .await?;
    let captured = recorder.await?;
    std::fs::write(&out, &captured).with_context(|| format!("writing {out}"))?;
    eprintln!("wrote {} bytes to {out}", captured.len());
    Ok(())
}
