//! The schedule document (`medcall import schedule FILE`, `PUT /admin/schedule`): LPUs
//! (seed 004's `lpu` object, plus medcall's own `utcOffset`), timetable cells and
//! patients, parsed, then validated whole before anything is written, every problem named
//! by its entry (`cells[3] "12d4…": beginTime must be …`).
//!
//! Pure, in the directory document's steps ([`crate::directory::document`]):
//! [`ScheduleDocument::validate`] checks what the document alone can tell (each value's
//! form, keys unique within the document); [`ValidSchedule::check_references`] checks each
//! cell's LPU and doctor against the sets of stored GUIDs the store loads once; then
//! [`Upsert::decide`] says, per entry, whether it is new, changed or as stored. The store
//! only loads and writes.
//!
//! Defaults of what a document leaves out: a text is `""`, a flag `false`, a number the
//! seed may leave unknown (`hostID`, `status.ping`) `null`, `ratings` `null`, `status` and
//! `parent` `null`, `addressDetail` and `worktimes` objects of `""`, `utcOffset` `+03:00`
//! (Moscow); a cell's `usedCount` 0, `room` and `uchastokNum` `""`, `flat` 0, `busyType`
//! `{"name": "", "type": 1, "code": ""}`, `ageCategories` all three, `dispensaryRequired`
//! false; a patient's `selfBookingForbidden` false, `dispensary` `[]`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, NaiveDate, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use super::{AgeCategory, AgeMask, Guid, UtcOffset};
use crate::directory::{DoctorGuid, UpsertCounts};

pub use crate::directory::document::MAX_PROBLEMS;

/// The longest text of an LPU or a cell, in characters.
pub const MAX_TEXT: usize = 1024;
/// The longest patient name or dispensary speciality, in characters.
pub const MAX_NAME: usize = 256;
/// The most places a cell may plan.
pub const MAX_PLAN_COUNT: i64 = 10_000;
/// The most entries of an LPU's `type` or a patient's `dispensary`.
pub const MAX_LIST: usize = 64;
/// The most bytes of an LPU's `ratings`, as medcall writes it back.
pub const MAX_RATINGS_BYTES: usize = 16 * 1024;
/// The seed's "no GUID".
const NIL_GUID: &str = "00000000-0000-0000-0000-000000000000";
/// The longest policy number.
pub const MAX_POLICY_NUMBER: usize = 32;

/// The document as JSON. Every list is optional: a missing one has nothing to upsert.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleDocument {
    #[serde(default)]
    pub lpus: Vec<LpuIn>,
    #[serde(default)]
    pub cells: Vec<CellIn>,
    #[serde(default)]
    pub patients: Vec<PatientIn>,
}

/// An LPU: seed 004's `lpu` object, whose fields are written back in this order (without
/// `utcOffset`) as the `lpu` of a reservation's answer, plus medcall's `utcOffset`.
/// Texts are at most 1024 characters with no control characters and may be empty.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LpuIn {
    /// Absent: `null`.
    #[serde(default)]
    pub status: Option<LpuStatusIn>,
    #[schema(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        example = "c3c977af-c3b4-4517-9d57-50a6844ec660"
    )]
    pub guid: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub fer_name: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub address: String,
    /// The LPU's kinds (`milk`, `smp`, `lpu`…), at most 64.
    #[serde(default, rename = "type")]
    #[schema(value_type = Vec<LpuText>, max_items = 64)]
    pub types: Vec<String>,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub phone: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub mcod: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub full_name: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub fcod: String,
    #[serde(default)]
    pub st_lpu: bool,
    /// A 32-bit integer; absent: `null`.
    #[serde(
        default,
        rename = "hostID",
        deserialize_with = "crate::json::some_whole_number"
    )]
    #[schema(minimum = -2147483648, maximum = 2147483647)]
    pub host_id: Option<i64>,
    /// No ADULT may book at this LPU (4005).
    #[serde(default)]
    pub is_children_polyclinic: bool,
    #[serde(default)]
    pub is_call_doctor: bool,
    #[serde(default)]
    pub is_waiting_list: bool,
    #[serde(default)]
    pub is_disp: bool,
    #[serde(default)]
    pub is_active: bool,
    #[serde(default)]
    pub have_schedule: bool,
    /// Absent: `null`.
    #[serde(default)]
    pub parent: Option<LpuParentIn>,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub post_index: String,
    /// Any JSON (at most 16 KiB as medcall writes it); absent: `null`.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub ratings: serde_json::Value,
    #[serde(default)]
    pub address_detail: AddressDetailIn,
    #[serde(default)]
    pub worktimes: WorktimesIn,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub city_id: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub inn: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub kpp: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub ogrn: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub okato: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub lic: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub management: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub photo: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub site: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub email: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub gps: String,
    /// medcall's own: the LPU's offset from UTC, for its local times and `num` days.
    /// Absent: `+03:00`. Not part of the seed's object.
    #[serde(default, skip_serializing)]
    #[schema(
        pattern = "^([+-](0[0-9]|1[0-7]):[0-5][0-9]|[+-]18:00)$",
        example = "+03:00"
    )]
    pub utc_offset: Option<String>,
}

// The schema of `LpuIn::types` (the text stays a `String`).
/// A text of the schedule: at most 1024 characters, no control characters.
#[derive(Debug)]
pub struct LpuText(pub String);

impl utoipa::PartialSchema for LpuText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        text_schema(
            "A text of the schedule: at most 1024 characters, no control characters.",
            0,
            MAX_TEXT,
            r"^[^\x00-\x1f\x7f-\x9f]*$",
        )
    }
}

impl utoipa::ToSchema for LpuText {
    fn name() -> std::borrow::Cow<'static, str> {
        "ScheduleText".into()
    }
}

/// A string schema (utoipa's derive takes no length bounds on a newtype).
fn text_schema(
    description: &str,
    min: usize,
    max: usize,
    pattern: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(description))
        .min_length((min > 0).then_some(min))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .into()
}

/// The LPU's connection status as the seed answers it.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LpuStatusIn {
    #[serde(default)]
    #[schema(
        max_length = 1024,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$",
        example = "Online"
    )]
    pub name: String,
    /// RFC 3339; written back in its offset to the second, as
    /// `2018-08-21T09:15:27+03:00`. Absent: `null`.
    #[serde(default)]
    #[schema(
        format = DateTime,
        example = "2018-08-21T09:15:27+03:00"
    )]
    pub last_change_time: Option<String>,
    /// A 32-bit integer; absent: `null`.
    #[serde(default, deserialize_with = "crate::json::some_whole_number")]
    #[schema(minimum = -2147483648, maximum = 2147483647)]
    pub ping: Option<i64>,
}

/// The LPU's parent organisation.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LpuParentIn {
    /// A GUID; the nil GUID for none.
    #[schema(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub guid: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub name: String,
}

/// The LPU's address in parts.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddressDetailIn {
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub postcode: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub settlement: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub street: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub building: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub house: String,
}

/// The LPU's opening hours per weekday, as text (`8:00 - 18:00`; `""` closed).
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorktimesIn {
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub monday: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub tuesday: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub wednesday: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub thursday: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub friday: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub saturday: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub sunday: String,
}

/// A timetable cell: a doctor's time at an LPU with `planCount` places.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CellIn {
    #[schema(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        example = "12d4329b-cbe3-4ca3-8cdc-0e7a8f23e0d5"
    )]
    pub guid: String,
    /// An LPU of the document or one already stored.
    #[schema(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        example = "c3c977af-c3b4-4517-9d57-50a6844ec660"
    )]
    pub lpu_guid: String,
    /// A doctor of the directory (its `guid`).
    #[schema(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        example = "f05d7650-a2a0-49dc-99f1-bb57829bc46a"
    )]
    pub doc_guid: String,
    /// RFC 3339; kept in its offset, to the second (a fraction is dropped).
    #[schema(
        format = DateTime,
        example = "2030-04-18T08:45:00+03:00"
    )]
    pub begin_time: String,
    /// After `beginTime` (409 otherwise: a rule between two fields).
    #[schema(
        format = DateTime,
        example = "2030-04-18T09:00:00+03:00"
    )]
    pub end_time: String,
    #[serde(deserialize_with = "crate::json::whole_number")]
    #[schema(minimum = 0, maximum = 10000, example = 1)]
    pub plan_count: i64,
    /// Places taken outside medcall, at most `planCount` (409 past it: a rule between two
    /// fields, which the schema cannot state).
    #[serde(default, deserialize_with = "crate::json::whole_number")]
    #[schema(minimum = 0, maximum = 10000, example = 0)]
    pub used_count: i64,
    #[serde(default)]
    #[schema(
        max_length = 1024,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$",
        example = "202"
    )]
    pub room: String,
    /// A 32-bit integer.
    #[serde(default, deserialize_with = "crate::json::whole_number")]
    #[schema(minimum = -2147483648, maximum = 2147483647, example = 0)]
    pub flat: i64,
    #[serde(default)]
    pub busy_type: BusyType,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub uchastok_num: String,
    /// Who may book the cell (4029); not empty.
    #[serde(default = "every_age_category")]
    #[schema(value_type = Vec<AgeCategoryWord>, min_items = 1)]
    pub age_categories: Vec<String>,
    /// Only patients on the dispensary register for the doctor's speciality (4007).
    #[serde(default)]
    pub dispensary_required: bool,
}

fn every_age_category() -> Vec<String> {
    AgeCategory::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect()
}

// The schema of `CellIn::age_categories` (the words stay `String`s until `validate`).
/// An age category: CHILD 0–14, TEEN 15–17, ADULT 18 and older.
#[derive(Debug, utoipa::ToSchema)]
#[schema(as = AgeCategory)]
#[serde(rename_all = "UPPERCASE")]
pub enum AgeCategoryWord {
    Child,
    Teen,
    Adult,
}

/// The seed's `DocBusyType` of a cell, stored and answered as this JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BusyType {
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub name: String,
    /// A 32-bit integer; absent: 1.
    #[serde(
        rename = "type",
        default = "BusyType::default_kind",
        deserialize_with = "crate::json::whole_number"
    )]
    #[schema(minimum = -2147483648, maximum = 2147483647)]
    pub kind: i64,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub code: String,
}

impl BusyType {
    fn default_kind() -> i64 {
        1
    }

    /// The stored (and answered) JSON: `{"name":"","type":1,"code":""}`.
    pub fn json(&self) -> String {
        let mut out = String::with_capacity(32 + self.name.len() + self.code.len());
        out.push_str("{\"name\":");
        crate::json::push_string(&mut out, &self.name);
        out.push_str(&format!(",\"type\":{},\"code\":", self.kind));
        crate::json::push_string(&mut out, &self.code);
        out.push('}');
        out
    }
}

impl Default for BusyType {
    fn default() -> BusyType {
        BusyType {
            name: String::new(),
            kind: BusyType::default_kind(),
            code: String::new(),
        }
    }
}

/// A patient who may confirm a reservation (4007, 4008).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatientIn {
    /// 1–32 ASCII letters and digits; kept in uppercase.
    #[schema(pattern = "^[0-9A-Za-z]{1,32}$", example = "5098799789000154")]
    pub policy_number: String,
    /// `YYYY-MM-DD`, a real date.
    #[schema(format = Date, example = "1985-03-14")]
    pub birth_date: String,
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        example = "Иванов Иван Иванович"
    )]
    pub full_name: String,
    /// Refused self-booking (4007).
    #[serde(default)]
    pub self_booking_forbidden: bool,
    /// The specialities the patient is on the dispensary register for (at most 64).
    #[serde(default)]
    #[schema(value_type = Vec<SpecialityText>, max_items = 64)]
    pub dispensary: Vec<String>,
}

// The schema of `PatientIn::dispensary`.
/// A doctor's speciality as the directory names it.
#[derive(Debug)]
pub struct SpecialityText(pub String);

impl utoipa::PartialSchema for SpecialityText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        text_schema(
            "A doctor's speciality as the directory names it: 1–256 characters, not blank, no control characters.",
            1,
            MAX_NAME,
            "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        )
    }
}

impl utoipa::ToSchema for SpecialityText {
    fn name() -> std::borrow::Cow<'static, str> {
        "Speciality".into()
    }
}

/// A patient's policy number: 1–32 ASCII letters and digits, in uppercase (a policy typed
/// in lowercase is the same policy).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyNumber(String);

impl PolicyNumber {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PolicyNumber {
    type Err = String;
    fn from_str(text: &str) -> Result<PolicyNumber, String> {
        if text.is_empty() || text.len() > MAX_POLICY_NUMBER {
            return Err(format!(
                "must be 1–{MAX_POLICY_NUMBER} ASCII letters and digits, got {} characters",
                text.chars().count()
            ));
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("must be ASCII letters and digits only".to_string());
        }
        Ok(PolicyNumber(text.to_ascii_uppercase()))
    }
}

impl fmt::Display for PolicyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An LPU, validated: what `booking_lpus` holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Lpu {
    pub guid: Guid,
    pub is_children_polyclinic: bool,
    pub utc_offset: UtcOffset,
    /// The seed's `lpu` object in its field order, GUIDs in lowercase and times
    /// normalized, without `utcOffset`: a reservation's answer embeds it as it stands.
    pub document: String,
}

/// A cell, validated: what `booking_cells` holds of the document (never `booked_count`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub guid: Guid,
    pub lpu: Guid,
    pub doctor: DoctorGuid,
    /// `2030-04-18T08:45:00+03:00`: the document's instant in the document's offset.
    pub begin_time: String,
    pub end_time: String,
    pub begin_utc: DateTime<Utc>,
    pub plan_count: i64,
    pub used_count: i64,
    pub room: String,
    pub flat: i64,
    pub busy_type: BusyType,
    pub uchastok_num: String,
    pub ages: AgeMask,
    pub dispensary_required: bool,
}

/// A patient, validated: what `booking_patients` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patient {
    pub policy_number: PolicyNumber,
    pub birth_date: NaiveDate,
    pub full_name: String,
    pub self_booking_forbidden: bool,
    /// Specialities, in the document's order.
    pub dispensary: Vec<String>,
}

impl Patient {
    /// The stored `dispensary` column: a JSON array of strings.
    pub fn dispensary_json(&self) -> String {
        let mut out = String::from("[");
        for (i, s) in self.dispensary.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            crate::json::push_string(&mut out, s);
        }
        out.push(']');
        out
    }

    /// The stored `birth_date` column: `YYYY-MM-DD`.
    pub fn birth_date_text(&self) -> String {
        self.birth_date.format("%Y-%m-%d").to_string()
    }
}

/// The document, every value validated and every key unique within it, in document order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ValidSchedule {
    pub lpus: Vec<Lpu>,
    pub cells: Vec<Cell>,
    pub patients: Vec<Patient>,
}

/// An import's counts, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScheduleCounts {
    pub lpus: UpsertCounts,
    pub cells: UpsertCounts,
    pub patients: UpsertCounts,
}

/// What to do with one entry of the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Insert,
    Update,
    Unchanged,
}

impl Upsert {
    /// `stored`: `None` when the store has no entry with the key, else whether the stored
    /// entry equals the document's in every column the document sets.
    pub fn decide(stored: Option<bool>) -> Upsert {
        match stored {
            None => Upsert::Insert,
            Some(true) => Upsert::Unchanged,
            Some(false) => Upsert::Update,
        }
    }

    /// Counts the decision; `true` when it writes.
    pub fn count(self, counts: &mut UpsertCounts) -> bool {
        match self {
            Upsert::Insert => counts.inserted += 1,
            Upsert::Update => counts.updated += 1,
            Upsert::Unchanged => counts.unchanged += 1,
        }
        self != Upsert::Unchanged
    }
}

/// How a problem names its entry: `kind[index] "key"`, the key quoted as Rust escapes it
/// and cut at 40 characters (as the directory document names its entries). Written only
/// when a problem is: a million good cells format nothing.
#[derive(Debug, Clone, Copy)]
struct Entry<'a> {
    kind: &'static str,
    index: usize,
    key: &'a str,
}

impl fmt::Display for Entry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown: String = self.key.chars().take(40).collect();
        if shown.len() < self.key.len() {
            shown.push('…');
        }
        write!(f, "{}[{}] {shown:?}", self.kind, self.index)
    }
}

/// A text of at most `max` characters with no control characters; when `required`, not
/// blank.
fn text_problem(field: &str, value: &str, max: usize, required: bool) -> Option<String> {
    if required && value.trim().is_empty() {
        Some(format!("{field} must not be empty"))
    } else if value.chars().count() > max {
        Some(format!("{field} must be at most {max} characters"))
    } else if value.chars().any(char::is_control) {
        Some(format!("{field} must not contain control characters"))
    } else {
        None
    }
}

/// Collects problems, each prefixed by its entry's name (the directory document's way).
#[derive(Default)]
struct Problems {
    all: Vec<String>,
    duplicates: usize,
}

impl Problems {
    fn push(&mut self, what: &Entry<'_>, problem: impl fmt::Display) {
        self.all.push(format!("{what}: {problem}"));
    }

    /// A problem between entries (the same key twice) or between an entry's fields (an end
    /// before its begin), which no JSON Schema can spell: a conflict, not a malformed
    /// document.
    fn push_conflict(&mut self, what: &Entry<'_>, problem: impl fmt::Display) {
        self.push(what, problem);
        self.duplicates += 1;
    }

    /// Every problem recorded is a conflict: each value is well formed.
    fn only_duplicates(&self) -> bool {
        !self.all.is_empty() && self.duplicates == self.all.len()
    }

    fn text(&mut self, what: &Entry<'_>, field: &str, value: &str, max: usize, required: bool) {
        if let Some(p) = text_problem(field, value, max, required) {
            self.push(what, p);
        }
    }

    fn guid<T: FromStr>(&mut self, what: &Entry<'_>, field: &str, value: &str) -> Option<T>
    where
        T::Err: fmt::Display,
    {
        value
            .parse()
            .map_err(|e| self.push(what, format!("{field} {e}")))
            .ok()
    }

    /// `value` within `range`, or a problem naming `field`.
    fn range(
        &mut self,
        what: &Entry<'_>,
        field: &str,
        value: i64,
        range: std::ops::RangeInclusive<i64>,
    ) -> bool {
        let ok = range.contains(&value);
        if !ok {
            self.push(
                what,
                format!(
                    "{field} must be {}–{}, got {value}",
                    range.start(),
                    range.end()
                ),
            );
        }
        ok
    }

    fn time(
        &mut self,
        what: &Entry<'_>,
        field: &str,
        value: &str,
    ) -> Option<DateTime<FixedOffset>> {
        seed_time(value)
            .map_err(|e| self.push(what, format!("{field} {e}")))
            .ok()
    }

    /// `Ok(value)` when nothing was recorded, else every problem (at most
    /// [`MAX_PROBLEMS`], then a count of the rest).
    fn finish<T>(self, value: T) -> Result<T, Vec<String>> {
        let mut problems = self.all;
        if problems.is_empty() {
            return Ok(value);
        }
        if problems.len() > MAX_PROBLEMS {
            let more = problems.len() - MAX_PROBLEMS;
            problems.truncate(MAX_PROBLEMS);
            problems.push(format!("… and {more} more problems"));
        }
        Err(problems)
    }
}

/// The index of the first entry seen with each key; a later one with the same key is a
/// problem naming both (the first by its key as validated).
struct FirstSeen<K>(HashMap<K, usize>);

impl<K: std::hash::Hash + Eq + Clone + fmt::Display> FirstSeen<K> {
    fn with_capacity(n: usize) -> FirstSeen<K> {
        FirstSeen(HashMap::with_capacity(n))
    }

    fn check(&mut self, problems: &mut Problems, what: &Entry<'_>, field: &str, key: Option<&K>) {
        let Some(key) = key else { return };
        match self.0.get(key) {
            Some(first) => {
                let first = Entry {
                    kind: what.kind,
                    index: *first,
                    key: &key.to_string(),
                };
                problems.push_conflict(what, format!("{field} is also that of {first}"));
            }
            None => {
                self.0.insert(key.clone(), what.index);
            }
        }
    }
}

const INT32: std::ops::RangeInclusive<i64> = (i32::MIN as i64)..=(i32::MAX as i64);

/// An RFC 3339 time (`2030-04-18T08:45:00+03:00`), to the second: a fraction of a second
/// is dropped (the seed writes none, and a cell's columns hold none).
///
/// # Errors
/// Not RFC 3339 with an offset, or a date or time that does not exist.
pub fn seed_time(text: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.trunc_subsecs(0))
        .map_err(|_| {
            format!(
                "must be an RFC 3339 time with an offset, such as 2030-04-18T08:45:00+03:00, got {text:?}"
            )
        })
}

/// `t` as the seed writes times, in its own offset: `2030-04-18T08:45:00+03:00`.
fn seed_text(t: &DateTime<FixedOffset>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

impl ScheduleDocument {
    /// Parses the document from JSON; a malformed one is refused naming the place
    /// (`cells[0].planCount: invalid type …`).
    ///
    /// # Errors
    /// The JSON is not a schedule document.
    pub fn from_json(bytes: &[u8]) -> Result<ScheduleDocument, String> {
        // serde reads a struct from an array too; a document is an object.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err("the document must be a JSON object".to_string());
        }
        // The plain parse is the fast one; only a document it refuses is read again, with
        // the path tracked, to name the place (tracking every value cost a large schedule
        // a fifth of its parse).
        if let Ok(doc) = serde_json::from_slice(bytes) {
            return Ok(doc);
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let doc = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path == "?" {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            }
        })?;
        de.end().map_err(|e| e.to_string())?;
        Ok(doc)
    }

    /// How many entries the document holds, of every kind.
    pub fn len(&self) -> usize {
        self.lpus.len() + self.cells.len() + self.patients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Validates every entry and the uniqueness of keys within the document.
    ///
    /// # Errors
    /// Every problem found (at most [`MAX_PROBLEMS`]), each naming its entry.
    pub fn validate(self) -> Result<ValidSchedule, Vec<String>> {
        self.validate_classified().map_err(|(problems, _)| problems)
    }

    /// [`ScheduleDocument::validate`], saying with the problems whether they are only
    /// duplicates (each entry well formed, some key given twice): a conflict between
    /// entries rather than a malformed document, as the directory import has it.
    ///
    /// # Errors
    /// As [`ScheduleDocument::validate`].
    pub fn validate_classified(self) -> Result<ValidSchedule, (Vec<String>, bool)> {
        let mut problems = Problems::default();
        let mut out = ValidSchedule {
            lpus: Vec::with_capacity(self.lpus.len()),
            cells: Vec::with_capacity(self.cells.len()),
            patients: Vec::with_capacity(self.patients.len()),
        };

        let mut seen = FirstSeen::with_capacity(self.lpus.len());
        for (i, l) in self.lpus.into_iter().enumerate() {
            out.lpus
                .extend(validate_lpu(&mut problems, &mut seen, i, l));
        }
        let mut seen = FirstSeen::with_capacity(self.cells.len());
        for (i, c) in self.cells.into_iter().enumerate() {
            out.cells
                .extend(validate_cell(&mut problems, &mut seen, i, c));
        }
        let mut seen = FirstSeen::with_capacity(self.patients.len());
        for (i, p) in self.patients.into_iter().enumerate() {
            out.patients
                .extend(validate_patient(&mut problems, &mut seen, i, p));
        }
        let only_duplicates = problems.only_duplicates();
        problems.finish(out).map_err(|p| (p, only_duplicates))
    }
}

/// The LPU, or `None` with its problems recorded.
fn validate_lpu(
    problems: &mut Problems,
    seen: &mut FirstSeen<Guid>,
    index: usize,
    mut l: LpuIn,
) -> Option<Lpu> {
    let before = problems.all.len();
    let key = l.guid.clone();
    let what = &Entry {
        kind: "lpus",
        index,
        key: &key,
    };
    let guid: Option<Guid> = problems.guid(what, "guid", &l.guid);
    seen.check(problems, what, "guid", guid.as_ref());
    let texts: [(&str, &str); 31] = [
        ("name", &l.name),
        ("ferName", &l.fer_name),
        ("address", &l.address),
        ("phone", &l.phone),
        ("mcod", &l.mcod),
        ("fullName", &l.full_name),
        ("fcod", &l.fcod),
        ("postIndex", &l.post_index),
        ("addressDetail.postcode", &l.address_detail.postcode),
        ("addressDetail.settlement", &l.address_detail.settlement),
        ("addressDetail.street", &l.address_detail.street),
        ("addressDetail.building", &l.address_detail.building),
        ("addressDetail.house", &l.address_detail.house),
        ("worktimes.monday", &l.worktimes.monday),
        ("worktimes.tuesday", &l.worktimes.tuesday),
        ("worktimes.wednesday", &l.worktimes.wednesday),
        ("worktimes.thursday", &l.worktimes.thursday),
        ("worktimes.friday", &l.worktimes.friday),
        ("worktimes.saturday", &l.worktimes.saturday),
        ("worktimes.sunday", &l.worktimes.sunday),
        ("cityId", &l.city_id),
        ("inn", &l.inn),
        ("kpp", &l.kpp),
        ("ogrn", &l.ogrn),
        ("okato", &l.okato),
        ("lic", &l.lic),
        ("management", &l.management),
        ("photo", &l.photo),
        ("site", &l.site),
        ("email", &l.email),
        ("gps", &l.gps),
    ];
    for (field, value) in texts {
        problems.text(what, field, value, MAX_TEXT, false);
    }
    if l.types.len() > MAX_LIST {
        problems.push(what, format!("type must have at most {MAX_LIST} entries"));
    }
    for (i, t) in l.types.iter().enumerate() {
        problems.text(what, &format!("type[{i}]"), t, MAX_TEXT, false);
    }
    if let Some(host) = l.host_id {
        problems.range(what, "hostID", host, INT32);
    }
    if let Some(status) = &mut l.status {
        problems.text(what, "status.name", &status.name, MAX_TEXT, false);
        if let Some(ping) = status.ping {
            problems.range(what, "status.ping", ping, INT32);
        }
        if let Some(text) = &status.last_change_time {
            if let Some(t) = problems.time(what, "status.lastChangeTime", text) {
                status.last_change_time = Some(seed_text(&t));
            }
        }
    }
    if let Some(parent) = &mut l.parent {
        // The nil GUID is how the seed writes "none" (`elementGuid`): a parent that is no
        // organisation is kept as given.
        if parent.guid != NIL_GUID {
            if let Some(g) = problems.guid::<Guid>(what, "parent.guid", &parent.guid) {
                parent.guid = g.to_string();
            }
        }
        problems.text(what, "parent.name", &parent.name, MAX_TEXT, false);
    }
    let utc_offset = match l.utc_offset.take() {
        None => UtcOffset::from_minutes(i64::from(UtcOffset::MOSCOW_MINUTES)),
        Some(text) => text
            .parse::<UtcOffset>()
            .map_err(|e| problems.push(what, format!("utcOffset {e}")))
            .ok(),
    };
    let ratings_len = serde_json::to_string(&l.ratings).map_or(0, |r| r.len());
    if ratings_len > MAX_RATINGS_BYTES {
        problems.push(
            what,
            format!("ratings must be at most {MAX_RATINGS_BYTES} bytes of JSON"),
        );
    }
    if problems.all.len() > before {
        return None;
    }
    let guid = guid?;
    l.guid = guid.to_string();
    // Writing a struct of strings, numbers and a `Value` back cannot fail; were it to,
    // the entry is refused rather than stored without its document.
    let document = serde_json::to_string(&l)
        .map_err(|e| problems.push(what, format!("cannot be written back: {e}")))
        .ok()?;
    Some(Lpu {
        guid,
        is_children_polyclinic: l.is_children_polyclinic,
        utc_offset: utc_offset?,
        document,
    })
}

/// The cell, or `None` with its problems recorded.
fn validate_cell(
    problems: &mut Problems,
    seen: &mut FirstSeen<Guid>,
    index: usize,
    c: CellIn,
) -> Option<Cell> {
    let before = problems.all.len();
    let what = &Entry {
        kind: "cells",
        index,
        key: &c.guid,
    };
    let guid: Option<Guid> = problems.guid(what, "guid", &c.guid);
    seen.check(problems, what, "guid", guid.as_ref());
    let lpu: Option<Guid> = problems.guid(what, "lpuGuid", &c.lpu_guid);
    let doctor: Option<DoctorGuid> = problems.guid(what, "docGuid", &c.doc_guid);
    let begin = problems.time(what, "beginTime", &c.begin_time);
    let end = problems.time(what, "endTime", &c.end_time);
    if let (Some(begin), Some(end)) = (&begin, &end) {
        if end <= begin {
            problems.push_conflict(what, "endTime must be after beginTime");
        }
    }
    let plan_ok = problems.range(what, "planCount", c.plan_count, 0..=MAX_PLAN_COUNT);
    if problems.range(what, "usedCount", c.used_count, 0..=MAX_PLAN_COUNT)
        && plan_ok
        && c.used_count > c.plan_count
    {
        problems.push_conflict(
            what,
            format!(
                "usedCount must be at most planCount ({}), got {}",
                c.plan_count, c.used_count
            ),
        );
    }
    problems.text(what, "room", &c.room, MAX_TEXT, false);
    problems.range(what, "flat", c.flat, INT32);
    problems.text(what, "busyType.name", &c.busy_type.name, MAX_TEXT, false);
    problems.range(what, "busyType.type", c.busy_type.kind, INT32);
    problems.text(what, "busyType.code", &c.busy_type.code, MAX_TEXT, false);
    problems.text(what, "uchastokNum", &c.uchastok_num, MAX_TEXT, false);
    let mut categories = Vec::with_capacity(c.age_categories.len());
    for (i, word) in c.age_categories.iter().enumerate() {
        match AgeCategory::parse(word) {
            Some(category) => categories.push(category),
            None => problems.push(
                what,
                format!("ageCategories[{i}] must be CHILD, TEEN or ADULT, got {word:?}"),
            ),
        }
    }
    let ages = AgeMask::of(categories);
    if c.age_categories.is_empty() {
        problems.push(what, "ageCategories must not be empty");
    }
    if problems.all.len() > before {
        return None;
    }
    let (begin, end) = (begin?, end?);
    Some(Cell {
        guid: guid?,
        lpu: lpu?,
        doctor: doctor?,
        begin_time: seed_text(&begin),
        end_time: seed_text(&end),
        begin_utc: begin.with_timezone(&Utc),
        plan_count: c.plan_count,
        used_count: c.used_count,
        room: c.room,
        flat: c.flat,
        busy_type: c.busy_type,
        uchastok_num: c.uchastok_num,
        ages: ages?,
        dispensary_required: c.dispensary_required,
    })
}

/// `YYYY-MM-DD`, a date that exists.
fn birth_date(text: &str) -> Result<NaiveDate, String> {
    let b = text.as_bytes();
    let shape = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !shape {
        return Err(format!("must be a date YYYY-MM-DD, got {text:?}"));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| format!("{text:?} is not a date"))
}

/// The patient, or `None` with its problems recorded.
fn validate_patient(
    problems: &mut Problems,
    seen: &mut FirstSeen<PolicyNumber>,
    index: usize,
    p: PatientIn,
) -> Option<Patient> {
    let before = problems.all.len();
    let what = &Entry {
        kind: "patients",
        index,
        key: &p.policy_number,
    };
    let policy_number = p
        .policy_number
        .parse::<PolicyNumber>()
        .map_err(|e| problems.push(what, format!("policyNumber {e}")))
        .ok();
    seen.check(problems, what, "policyNumber", policy_number.as_ref());
    let birth = birth_date(&p.birth_date)
        .map_err(|e| problems.push(what, format!("birthDate {e}")))
        .ok();
    problems.text(what, "fullName", &p.full_name, MAX_NAME, true);
    if p.dispensary.len() > MAX_LIST {
        problems.push(
            what,
            format!("dispensary must have at most {MAX_LIST} entries"),
        );
    }
    for (i, s) in p.dispensary.iter().enumerate() {
        problems.text(what, &format!("dispensary[{i}]"), s, MAX_NAME, true);
    }
    if problems.all.len() > before {
        return None;
    }
    Some(Patient {
        policy_number: policy_number?,
        birth_date: birth?,
        full_name: p.full_name,
        self_booking_forbidden: p.self_booking_forbidden,
        dispensary: p.dispensary,
    })
}

impl ValidSchedule {
    /// Checks that every cell names an LPU of the document or of `stored_lpus`, and a
    /// doctor of `doctors` (the directory's GUIDs): the store loads both sets once.
    ///
    /// # Errors
    /// Every problem (at most [`MAX_PROBLEMS`]), each naming its cell.
    pub fn check_references(
        &self,
        stored_lpus: &HashSet<Guid>,
        doctors: &HashSet<DoctorGuid>,
    ) -> Result<(), Vec<String>> {
        let mut problems = Problems::default();
        let defined: HashSet<&Guid> = self.lpus.iter().map(|l| &l.guid).collect();
        for (i, c) in self.cells.iter().enumerate() {
            let lpu_known = defined.contains(&c.lpu) || stored_lpus.contains(&c.lpu);
            let doctor_known = doctors.contains(&c.doctor);
            if lpu_known && doctor_known {
                continue;
            }
            let what = Entry {
                kind: "cells",
                index: i,
                key: c.guid.as_str(),
            };
            if !lpu_known {
                problems.push(
                    &what,
                    format!(
                        "lpuGuid {:?} is neither in the document nor stored",
                        c.lpu.as_str()
                    ),
                );
            }
            if !doctor_known {
                problems.push(
                    &what,
                    format!(
                        "docGuid {:?} is not a doctor of the directory",
                        c.doctor.as_str()
                    ),
                );
            }
        }
        problems.finish(())
    }

    /// How many entries of every kind.
    pub fn len(&self) -> usize {
        self.lpus.len() + self.cells.len() + self.patients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The canonical `lpu` JSON of one LPU object (seed 004's, optionally with `utcOffset`):
/// what `booking_lpus.document` holds for it.
///
/// # Errors
/// The object is malformed or invalid: every problem, as the import names them.
pub fn lpu_document(json: &[u8]) -> Result<String, Vec<String>> {
    let lpu: LpuIn = serde_json::from_slice(json).map_err(|e| vec![e.to_string()])?;
    let mut problems = Problems::default();
    let valid = validate_lpu(&mut problems, &mut FirstSeen::with_capacity(1), 0, lpu);
    match valid {
        Some(l) => Ok(l.document),
        None => problems.finish(String::new()),
    }
}

#[cfg(test)]
mod tests;
