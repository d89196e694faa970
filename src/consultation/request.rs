//! A consultation's create request (SPEC §4.1) as fields the client sent, and their
//! validation into a [`NewConsultation`].
//!
//! Two steps, as the parsers of this crate do: [`CreateFields`] keeps each field raw (a
//! JSON value or a multipart text part) so that a wrong type is a message naming the
//! field, never a deserialisation failure; [`validate`] then checks every field and
//! answers every problem at once, each message one English sentence naming its field in
//! the seeds' camelCase.
//!
//! Pure: no I/O, no HTTP. Reading the body (JSON or multipart, the attachment) is
//! `http::consultation_body`; whether the doctor exists is the store's.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{Map, Value};

use super::model::{Kind, NewConsultation, Phone};
use crate::directory::DoctorId;

/// The longest `patientFullName`, in characters (not bytes).
pub const PATIENT_NAME_MAX_CHARS: usize = 256;
/// The longest consultation the seeds allow, in minutes (`duration` is 1–240).
pub const DURATION_MAX_MIN: u32 = 240;
/// The longest `externalNotificationUrl`, in bytes.
pub const NOTIFY_URL_MAX_BYTES: usize = 2048;

/// One field's value as the client sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    /// A value of a JSON body (never `null`: a `null` field is an absent one).
    Json(Value),
    /// A multipart text part, as text. An empty part counts as absent (an HTML form
    /// sends its empty inputs).
    Text(String),
}

/// The patient's phone as sent: whole, or (multipart only) as two parts.
#[derive(Debug, Clone, PartialEq)]
pub enum PhoneField {
    /// A JSON body's `patientPhone`, or a multipart text part `patientPhone` holding the
    /// object as JSON text.
    Whole(Raw),
    /// The multipart parts `patientPhone.code` / `patientPhone[code]` and
    /// `patientPhone.number` / `patientPhone[number]`.
    Parts {
        code: Option<String>,
        number: Option<String>,
    },
}

/// The create request's fields, each as the client sent it, or `None` when absent.
/// Fields the seeds do not name are not kept (ignored, as integrators expect of this API).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateFields {
    pub doctor_id: Option<Raw>,
    pub patient_full_name: Option<Raw>,
    /// Read for voip only; a callback ignores it.
    pub video_support: Option<Raw>,
    /// Read for callback only; a voip consultation ignores it.
    pub patient_phone: Option<PhoneField>,
    pub begin_at_utc: Option<Raw>,
    pub duration: Option<Raw>,
    pub external_notification_url: Option<Raw>,
}

/// The multipart part names that are fields of the request (the file part `attachment`
/// is not one of them).
pub const TEXT_FIELD_NAMES: [&str; 11] = [
    "doctorId",
    "patientFullName",
    "videoSupport",
    "patientPhone",
    "patientPhone.code",
    "patientPhone[code]",
    "patientPhone.number",
    "patientPhone[number]",
    "beginAtUtc",
    "duration",
    "externalNotificationUrl",
];

/// The field a multipart text part fills.
enum Slot {
    Plain(fn(&mut CreateFields) -> &mut Option<Raw>, &'static str),
    PhoneWhole,
    PhoneCode,
    PhoneNumber,
}

fn slot(name: &str) -> Option<Slot> {
    Some(match name {
        "doctorId" => Slot::Plain(|f| &mut f.doctor_id, "doctorId"),
        "patientFullName" => Slot::Plain(|f| &mut f.patient_full_name, "patientFullName"),
        "videoSupport" => Slot::Plain(|f| &mut f.video_support, "videoSupport"),
        "beginAtUtc" => Slot::Plain(|f| &mut f.begin_at_utc, "beginAtUtc"),
        "duration" => Slot::Plain(|f| &mut f.duration, "duration"),
        "externalNotificationUrl" => Slot::Plain(
            |f| &mut f.external_notification_url,
            "externalNotificationUrl",
        ),
        "patientPhone" => Slot::PhoneWhole,
        "patientPhone.code" | "patientPhone[code]" => Slot::PhoneCode,
        "patientPhone.number" | "patientPhone[number]" => Slot::PhoneNumber,
        _ => return None,
    })
}

impl CreateFields {
    /// The fields of a JSON body's object. A `null` is an absent field; names the seeds
    /// do not know are ignored.
    pub fn from_json(object: Map<String, Value>) -> CreateFields {
        let mut fields = CreateFields::default();
        for (name, value) in object {
            if value.is_null() {
                continue;
            }
            match slot(&name) {
                Some(Slot::Plain(field, _)) => *field(&mut fields) = Some(Raw::Json(value)),
                Some(Slot::PhoneWhole) => {
                    fields.patient_phone = Some(PhoneField::Whole(Raw::Json(value)));
                }
                // `patientPhone.code` is a multipart spelling; a JSON body nests the object.
                Some(Slot::PhoneCode | Slot::PhoneNumber) | None => {}
            }
        }
        fields
    }

    /// Whether a multipart part of this name is a field of the request (else it is
    /// skipped unread).
    pub fn is_text_field(name: &str) -> bool {
        slot(name).is_some()
    }

    /// Records a multipart text part. Parts of names the seeds do not know are ignored.
    ///
    /// # Errors
    /// The message for a field given twice (also `patientPhone` given whole and in
    /// parts): a form that says two things is refused, not read by its first or last.
    pub fn add_text(&mut self, name: &str, text: String) -> Result<(), String> {
        let twice = |field: &str| format!("{field} is given more than once.");
        let whole_and_parts = || {
            "patientPhone is given both whole and as patientPhone.code/patientPhone.number."
                .to_owned()
        };
        match slot(name) {
            None => Ok(()),
            Some(Slot::Plain(field, field_name)) => {
                let field = field(self);
                if field.is_some() {
                    return Err(twice(field_name));
                }
                *field = Some(Raw::Text(text));
                Ok(())
            }
            Some(Slot::PhoneWhole) => match self.patient_phone {
                Some(PhoneField::Whole(_)) => Err(twice("patientPhone")),
                Some(PhoneField::Parts { .. }) => Err(whole_and_parts()),
                None => {
                    self.patient_phone = Some(PhoneField::Whole(Raw::Text(text)));
                    Ok(())
                }
            },
            Some(part @ (Slot::PhoneCode | Slot::PhoneNumber)) => {
                let phone = self.patient_phone.get_or_insert(PhoneField::Parts {
                    code: None,
                    number: None,
                });
                let PhoneField::Parts { code, number } = phone else {
                    return Err(whole_and_parts());
                };
                let (held, field_name) = match part {
                    Slot::PhoneCode => (code, "patientPhone.code"),
                    _ => (number, "patientPhone.number"),
                };
                if held.is_some() {
                    return Err(twice(field_name));
                }
                *held = Some(text);
                Ok(())
            }
        }
    }
}

/// What validation takes from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateRules {
    /// `duration` when the request has none (config default 30).
    pub default_duration_min: u32,
    /// How far in the past `beginAtUtc` may be (1 minute): a client's clock and the
    /// request's transit are not exact.
    pub max_past: Duration,
}

/// The value, or its problem noted.
fn check<T>(problems: &mut Vec<String>, result: Result<T, String>) -> Option<T> {
    result.map_err(|m| problems.push(m)).ok()
}

/// Checks every field of a create request of `kind` at `now`.
///
/// The request's `beginAtUtc` is normalised to UTC, cut to whole microseconds (the
/// precision every stored time has, so the object answered equals the one read back).
///
/// # Errors
/// Every problem, one message per wrong field, in the seeds' field order.
pub fn validate(
    fields: &CreateFields,
    kind: Kind,
    now: DateTime<Utc>,
    rules: &CreateRules,
) -> Result<NewConsultation, Vec<String>> {
    let mut problems = Vec::new();

    let doctor = check(&mut problems, doctor_id(present(&fields.doctor_id)));
    let patient_full_name = check(
        &mut problems,
        patient_full_name(present(&fields.patient_full_name)),
    );
    let video_support = match kind {
        Kind::Voip => check(
            &mut problems,
            video_support(present(&fields.video_support)).map(Some),
        ),
        Kind::Callback => Some(None),
    };
    let patient_phone = match kind {
        Kind::Voip => Some(None),
        Kind::Callback => patient_phone(fields.patient_phone.as_ref())
            .map(Some)
            .map_err(|messages| problems.extend(messages))
            .ok(),
    };
    let begin_at = check(
        &mut problems,
        begin_at(optional(&fields.begin_at_utc), now, rules.max_past),
    );
    let duration_min = check(&mut problems, duration(optional(&fields.duration), rules));
    let notify_url = check(
        &mut problems,
        notify_url(optional(&fields.external_notification_url)),
    );

    match (
        doctor,
        patient_full_name,
        video_support,
        patient_phone,
        begin_at,
        duration_min,
        notify_url,
    ) {
        (
            Some(doctor),
            Some(patient_full_name),
            Some(video_support),
            Some(patient_phone),
            Some(begin_at),
            Some(duration_min),
            Some(notify_url),
        ) if problems.is_empty() => Ok(NewConsultation {
            kind,
            doctor,
            patient_full_name,
            video_support,
            patient_phone,
            begin_at,
            duration_min,
            notify_url,
        }),
        _ => Err(problems),
    }
}

/// An optional field, unless absent or empty (a JSON `""` too: clients send an empty
/// string for "none", as forms do).
fn optional(raw: &Option<Raw>) -> Option<&Raw> {
    present(raw).filter(|raw| !matches!(raw, Raw::Json(Value::String(text)) if text.is_empty()))
}

/// The field, unless it is absent or an empty multipart text.
fn present(raw: &Option<Raw>) -> Option<&Raw> {
    raw.as_ref()
        .filter(|raw| !matches!(raw, Raw::Text(text) if text.is_empty()))
}

fn required<'a>(raw: Option<&'a Raw>, field: &str) -> Result<&'a Raw, String> {
    raw.ok_or_else(|| format!("{field} is required."))
}

/// A JSON integer, also written as a whole float (`7.0`, `7e0`), as JSON Schema's
/// `integer` counts them (the rest of the crate reads integers so too).
fn json_integer(value: &Value) -> Option<i64> {
    let Value::Number(n) = value else { return None };
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    // Below 2^53 every whole f64 is exactly the integer its text spelled.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    n.as_f64()
        .filter(|v| v.fract() == 0.0 && v.abs() < EXACT)
        .map(|v| {
            #[allow(clippy::cast_possible_truncation)]
            let whole = v as i64;
            whole
        })
}

/// A multipart text integer: ASCII digits only (`+5`, ` 5` and `5.0` are not how a form
/// writes a number).
fn text_integer(text: &str) -> Option<i64> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

fn integer(raw: &Raw) -> Option<i64> {
    match raw {
        Raw::Json(value) => json_integer(value),
        Raw::Text(text) => text_integer(text),
    }
}

fn doctor_id(raw: Option<&Raw>) -> Result<DoctorId, String> {
    let raw = required(raw, "doctorId")?;
    integer(raw)
        .and_then(|id| DoctorId::new(id).ok())
        .ok_or_else(|| "doctorId must be a positive integer.".to_owned())
}

fn text(raw: &Raw) -> Option<&str> {
    match raw {
        Raw::Json(Value::String(s)) | Raw::Text(s) => Some(s),
        Raw::Json(_) => None,
    }
}

/// Kept as sent (not trimmed): the name is the patient's, shown to the doctor.
fn patient_full_name(raw: Option<&Raw>) -> Result<String, String> {
    let raw = required(raw, "patientFullName")?;
    let name = text(raw).ok_or_else(|| "patientFullName must be a string.".to_owned())?;
    if !(1..=PATIENT_NAME_MAX_CHARS).contains(&name.chars().count()) {
        return Err(format!(
            "patientFullName must be 1 to {PATIENT_NAME_MAX_CHARS} characters."
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("patientFullName must not contain control characters.".to_owned());
    }
    if name.chars().all(char::is_whitespace) {
        return Err("patientFullName must not be only whitespace.".to_owned());
    }
    Ok(name.to_owned())
}

fn video_support(raw: Option<&Raw>) -> Result<bool, String> {
    let raw = required(raw, "videoSupport")?;
    match raw {
        Raw::Json(Value::Bool(b)) => Some(*b),
        Raw::Text(text) if text == "true" => Some(true),
        Raw::Text(text) if text == "false" => Some(false),
        _ => None,
    }
    .ok_or_else(|| "videoSupport must be true or false.".to_owned())
}

/// The phone's digits as sent: a JSON string as is, a JSON non-negative integer as its
/// decimal digits (the seed writes strings; a client writing numbers means the same).
fn json_digits(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) => json_integer(value)
            .filter(|i| *i >= 0)
            .map(|i| i.to_string()),
        _ => None,
    }
}

fn patient_phone(phone: Option<&PhoneField>) -> Result<Phone, Vec<String>> {
    const NOT_AN_OBJECT: &str = "patientPhone must be an object with code and number.";
    let (code, number) = match phone {
        None => return Err(vec!["patientPhone is required.".to_owned()]),
        Some(PhoneField::Parts { code, number }) => (
            code.clone().filter(|c| !c.is_empty()).map(Some),
            number.clone().filter(|n| !n.is_empty()).map(Some),
        ),
        Some(PhoneField::Whole(raw)) => {
            let parsed;
            let value = match raw {
                Raw::Json(value) => value,
                Raw::Text(text) if text.is_empty() => {
                    return Err(vec!["patientPhone is required.".to_owned()]);
                }
                Raw::Text(text) => {
                    parsed = serde_json::from_str::<Value>(text)
                        .map_err(|_| vec![NOT_AN_OBJECT.to_owned()])?;
                    &parsed
                }
            };
            let Value::Object(object) = value else {
                return Err(vec![NOT_AN_OBJECT.to_owned()]);
            };
            let part = |name: &str| object.get(name).filter(|v| !v.is_null()).map(json_digits);
            (part("code"), part("number"))
        }
    };
    // `None`: absent; `Some(None)`: present but not digits of any kind (a `true`, an
    // object), which `Phone` refuses with its own message.
    let mut problems = Vec::new();
    if code.is_none() {
        problems.push("patientPhone.code is required.".to_owned());
    }
    if number.is_none() {
        problems.push("patientPhone.number is required.".to_owned());
    }
    // A placeholder that is never a digit stands for a value of the wrong type.
    let code = code.flatten().unwrap_or_else(|| "-".to_owned());
    let number = number.flatten().unwrap_or_else(|| "-".to_owned());
    match Phone::with_all_problems(&code, &number) {
        Ok(phone) if problems.is_empty() => Ok(phone),
        Ok(_) => Err(problems),
        Err(wrong) => {
            // A part already said to be missing is not also said to be malformed.
            let said: Vec<String> = problems
                .iter()
                .filter_map(|p| p.split(' ').next().map(str::to_owned))
                .collect();
            problems.extend(
                wrong
                    .iter()
                    .filter(|m| !said.iter().any(|s| m.split(' ').next() == Some(s.as_str())))
                    .map(|m| (*m).to_owned()),
            );
            problems.sort_by_key(|m| !m.starts_with("patientPhone.code"));
            Err(problems)
        }
    }
}

fn begin_at(
    raw: Option<&Raw>,
    now: DateTime<Utc>,
    max_past: Duration,
) -> Result<Option<DateTime<Utc>>, String> {
    let Some(raw) = raw else { return Ok(None) };
    let at = text(raw)
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|at| at.with_timezone(&Utc))
        .ok_or_else(|| "beginAtUtc must be an RFC 3339 instant.".to_owned())?;
    let at = at.duration_trunc(Duration::microseconds(1)).unwrap_or(at);
    if at < now - max_past {
        return Err(format!(
            "beginAtUtc is more than {} in the past.",
            spoken(max_past)
        ));
    }
    Ok(Some(at))
}

/// `1 minute`, `2 minutes`, `90 seconds`: the allowance as a message says it.
fn spoken(span: Duration) -> String {
    let seconds = span.num_seconds();
    let (count, unit) = if seconds % 60 == 0 {
        (seconds / 60, "minute")
    } else {
        (seconds, "second")
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural}")
}

fn duration(raw: Option<&Raw>, rules: &CreateRules) -> Result<u32, String> {
    let Some(raw) = raw else {
        return Ok(rules.default_duration_min);
    };
    integer(raw)
        .and_then(|minutes| u32::try_from(minutes).ok())
        .filter(|minutes| (1..=DURATION_MAX_MIN).contains(minutes))
        .ok_or_else(|| format!("duration must be an integer from 1 to {DURATION_MAX_MIN}."))
}

/// Kept as sent once checked (the webhook sender parses it again, through the egress
/// guard). A user name or password is refused: the URL is shown in every answer and
/// log line about the consultation, and a webhook is authenticated by its signature.
fn notify_url(raw: Option<&Raw>) -> Result<Option<String>, String> {
    const NOT_A_URL: &str = "externalNotificationUrl must be an absolute http or https URL.";
    let Some(raw) = raw else { return Ok(None) };
    let text = text(raw).ok_or_else(|| NOT_A_URL.to_owned())?;
    if text.len() > NOTIFY_URL_MAX_BYTES {
        return Err(format!(
            "externalNotificationUrl must be at most {NOTIFY_URL_MAX_BYTES} bytes."
        ));
    }
    // The `url` parser drops tabs and line breaks and trims spaces without a word; a URL
    // sent with them is not the URL it would become.
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(NOT_A_URL.to_owned());
    }
    let url = url::Url::parse(text).map_err(|_| NOT_A_URL.to_owned())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(NOT_A_URL.to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("externalNotificationUrl must not contain a user name or password.".to_owned());
    }
    Ok(Some(text.to_owned()))
}

#[cfg(test)]
mod tests;
