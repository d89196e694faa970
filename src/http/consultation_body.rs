//! Reading a consultation's create request (SPEC §4.1): `application/json`, or
//! `multipart/form-data` with the optional `attachment` file part.
//!
//! Everything is read bounded. The attachment is streamed to a temporary file in the
//! attachments directory while its SHA-256 is computed; one byte past the limit and the
//! read stops, the file is removed and the answer is 413. A kept attachment is named by
//! its hash (`<dir>/<sha256>`: one copy per content). The temporary file is removed on
//! every other way out too (a broken body, a client gone mid-upload): [`TempFile`]
//! removes it when dropped.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::consultation::model::Attachment;
use crate::consultation::request::CreateFields;

/// How much a create request may carry.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// A JSON body (`[http] max_body_bytes`).
    pub max_json_bytes: usize,
    /// The attachment (`[consultations] max_attachment_bytes`, 10 MB).
    pub max_attachment_bytes: u64,
    /// Each multipart text part.
    pub max_text_part_bytes: usize,
}

impl BodyLimits {
    /// The most a multipart body may carry in all: the attachment and room for the text
    /// parts and the multipart framing (the route's body limit).
    pub fn max_multipart_bytes(&self) -> usize {
        usize::try_from(self.max_attachment_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(1 << 20)
    }
}

/// A create request that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    status: StatusCode,
    message: String,
}

impl BodyError {
    fn bad(message: impl Into<String>) -> BodyError {
        BodyError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn too_large(message: impl Into<String>) -> BodyError {
        BodyError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> String {
        self.message.clone()
    }
}

/// The attachment as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedAttachment {
    pub attachment: Attachment,
    pub path: PathBuf,
}

/// Reads the fields (and the attachment) of a create request.
///
/// # Errors
/// 415 for a content type that is neither JSON nor multipart, 413 for a body or part
/// over its limit, 400 for a body that does not parse.
pub async fn read_create(
    request: Request,
    limits: &BodyLimits,
    attachments: &Path,
) -> Result<(CreateFields, Option<ReceivedAttachment>), BodyError> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    match essence.as_str() {
        "application/json" => read_json(request.into_body(), limits)
            .await
            .map(|f| (f, None)),
        "multipart/form-data" => read_multipart(request, limits, attachments).await,
        _ => Err(BodyError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "The body must be application/json or multipart/form-data.".into(),
        }),
    }
}

async fn read_json(body: Body, limits: &BodyLimits) -> Result<CreateFields, BodyError> {
    let bytes = axum::body::to_bytes(body, limits.max_json_bytes)
        .await
        .map_err(|_| {
            BodyError::too_large(format!(
                "The body is larger than {} bytes.",
                limits.max_json_bytes
            ))
        })?;
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(object)) => Ok(CreateFields::from_json(object)),
        Ok(_) => Err(BodyError::bad("The body must be a JSON object.")),
        Err(e) => Err(BodyError::bad(format!("The body is not JSON: {e}."))),
    }
}

/// A temporary file removed when dropped, unless kept.
struct TempFile {
    path: Option<PathBuf>,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn multipart_error(e: &multer::Error) -> BodyError {
    match e {
        multer::Error::StreamSizeExceeded { limit } => {
            BodyError::too_large(format!("The body is larger than {limit} bytes."))
        }
        other => BodyError::bad(format!("The multipart body does not parse: {other}.")),
    }
}

async fn read_multipart(
    request: Request,
    limits: &BodyLimits,
    attachments: &Path,
) -> Result<(CreateFields, Option<ReceivedAttachment>), BodyError> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| BodyError::bad("The multipart content type has no boundary."))?;
    let constraints = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(limits.max_multipart_bytes() as u64));
    let mut multipart = multer::Multipart::with_constraints(
        request.into_body().into_data_stream(),
        boundary,
        constraints,
    );
    let mut fields = CreateFields::default();
    let mut received: Option<ReceivedAttachment> = None;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(&e))?
    {
        let name = field.name().unwrap_or("").to_owned();
        if name == "attachment" {
            if received.is_some() {
                return Err(BodyError::bad("Only one attachment may be sent."));
            }
            let file_name = display_name(field.file_name().unwrap_or(""));
            let content_type = field
                .content_type()
                .map(ToString::to_string)
                .filter(|t| valid_media_type(t))
                .unwrap_or_else(|| "application/octet-stream".to_owned());
            tokio::fs::create_dir_all(attachments).await.map_err(|e| {
                tracing::error!(error = %e, "cannot create the attachments directory");
                BodyError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: "The attachment cannot be stored.".into(),
                }
            })?;
            let temp_path = attachments.join(format!(".upload-{:032x}", rand::random::<u128>()));
            let mut temp = TempFile {
                path: Some(temp_path.clone()),
            };
            let store_failed = |e: std::io::Error| {
                tracing::error!(error = %e, "cannot write an attachment");
                BodyError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: "The attachment cannot be stored.".into(),
                }
            };
            let mut file = tokio::fs::File::create(&temp_path)
                .await
                .map_err(store_failed)?;
            let mut hash = Sha256::new();
            let mut size: u64 = 0;
            while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(&e))? {
                size += chunk.len() as u64;
                if size > limits.max_attachment_bytes {
                    return Err(BodyError::too_large(format!(
                        "The attachment is larger than {} bytes.",
                        limits.max_attachment_bytes
                    )));
                }
                hash.update(&chunk);
                file.write_all(&chunk).await.map_err(store_failed)?;
            }
            file.sync_all().await.map_err(store_failed)?;
            drop(file);
            let sha256 = hex::encode(hash.finalize());
            let path = attachments.join(&sha256);
            // The same content kept before: that copy stands, the temporary goes.
            if tokio::fs::metadata(&path).await.is_err() {
                tokio::fs::rename(&temp_path, &path)
                    .await
                    .map_err(store_failed)?;
                temp.path = None;
            }
            drop(temp);
            received = Some(ReceivedAttachment {
                attachment: Attachment {
                    file_name,
                    content_type,
                    size,
                    sha256,
                },
                path,
            });
            continue;
        }
        if !CreateFields::is_text_field(&name) {
            // Not a field of the request: skipped, read to its end within the limits.
            while field
                .chunk()
                .await
                .map_err(|e| multipart_error(&e))?
                .is_some()
            {}
            continue;
        }
        let mut text = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(&e))? {
            if text.len() + chunk.len() > limits.max_text_part_bytes {
                return Err(BodyError::too_large(format!(
                    "The part {name} is larger than {} bytes.",
                    limits.max_text_part_bytes
                )));
            }
            text.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(text)
            .map_err(|_| BodyError::bad(format!("The part {name} is not UTF-8 text.")))?;
        fields.add_text(&name, text).map_err(BodyError::bad)?;
    }
    Ok((fields, received))
}

/// The file name as shown: its last path component, without control characters, at
/// most 255 characters; `attachment` when nothing is left.
fn display_name(sent: &str) -> String {
    let last = sent.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last.chars().filter(|c| !c.is_control()).take(255).collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        "attachment".to_owned()
    } else {
        clean.to_owned()
    }
}

/// `type/subtype` of token characters (parameters allowed after `;`).
fn valid_media_type(text: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let essence = text.split(';').next().unwrap_or("").trim();
    text.len() <= 255
        && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && essence
            .split_once('/')
            .is_some_and(|(t, s)| token(t) && token(s))
}

#[cfg(test)]
mod tests;
