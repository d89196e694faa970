//! A fake Asterisk manager for the load tools: reads the daemon's actions and answers
//! each as Asterisk would (login, lists with no items, commands), fast and empty.
//! Each load tool that includes it uses what it needs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

/// The next action the daemon sent, as its `Name: value` pairs; `None` when it hung up.
pub fn read_action(reader: &mut BufReader<TcpStream>) -> Option<Vec<(String, String)>> {
    let mut fields = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Some(fields);
        }
        if let Some((k, v)) = line.split_once(':') {
            fields.push((k.to_string(), v.trim().to_string()));
        }
    }
}

/// The value of header `k` of an action.
pub fn get<'a>(fields: &'a [(String, String)], k: &str) -> &'a str {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(k))
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// Asterisk's answer to `action` with `ActionID` `id`.
pub fn reply(action: &str, id: &str) -> String {
    match action.to_ascii_lowercase().as_str() {
        "challenge" => {
            format!("Response: Success\r\nActionID: {id}\r\nChallenge: 123456789\r\n\r\n")
        }
        "coreshowchannels" => format!(
            "Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n\
             Event: CoreShowChannelsComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 0\r\n\r\n"
        ),
        "confbridgelistrooms" => {
            format!("Response: Error\r\nActionID: {id}\r\nMessage: No active conferences.\r\n\r\n")
        }
        "command" => format!(
            "Response: Success\r\nActionID: {id}\r\nMessage: Command output follows\r\nOutput: Asterisk 22.10.1 built by load tool\r\n\r\n"
        ),
        "coresettings" => format!(
            "Response: Success\r\nActionID: {id}\r\nAsteriskVersion: 22.10.1\r\nAMIversion: 11.0.0\r\n\r\n"
        ),
        "ping" => {
            format!("Response: Success\r\nActionID: {id}\r\nPing: Pong\r\nTimestamp: 0.0\r\n\r\n")
        }
        _ => format!("Response: Success\r\nActionID: {id}\r\nMessage: OK\r\n\r\n"),
    }
}

/// Answers actions until one named `last` was answered.
pub fn serve_actions_until(reader: &mut BufReader<TcpStream>, writer: &mut TcpStream, last: &str) {
    while let Some(fields) = read_action(reader) {
        let action = get(&fields, "Action").to_string();
        let id = get(&fields, "ActionID").to_string();
        if writer.write_all(reply(&action, &id).as_bytes()).is_err() {
            return;
        }
        if action.eq_ignore_ascii_case(last) {
            return;
        }
    }
}

/// Shown every action the fake server receives, as its `Name: value` pairs.
pub type Observer = std::sync::Arc<dyn Fn(&[(String, String)]) + Send + Sync>;

/// Serves every connection to `listener` on a thread of its own: greets as Asterisk 22,
/// shows each action to `observe`, answers it at once. Returns at once.
pub fn serve(listener: std::net::TcpListener, observe: Observer) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let observe = std::sync::Arc::clone(&observe);
            std::thread::spawn(move || {
                let Ok(mut writer) = stream.try_clone() else {
                    return;
                };
                let mut reader = BufReader::new(stream);
                if writer
                    .write_all(b"Asterisk Call Manager/11.0.0\r\n")
                    .is_err()
                {
                    return;
                }
                while let Some(fields) = read_action(&mut reader) {
                    observe(&fields);
                    let reply = reply(get(&fields, "Action"), get(&fields, "ActionID"));
                    if writer.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
}
