//! A patient's documents: PDF, PNG or JPEG files uploaded to the chart, stored encrypted like
//! every record (a Binary with the bytes, a DocumentReference describing them, written
//! together). The type is decided by the file's content, never by its name or the browser's
//! word; anything else is refused with a clear message. Files are served as downloads
//! (`Content-Disposition: attachment`, `nosniff`, a sandboxing policy); images are previewed
//! inline as images only, never as a page.

use askama::Template;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use ironchart_fhir::{Id, ResourceType};
use ironchart_records::{Interaction, RecordsError, Resource};
use serde_json::{Value, json};

use super::chart::{AllergyStatus, Banner, banner_of, display_date, find, may_search, patient_of};
use super::visit::{Problems, me_ref};
use super::{Nav, PageError, SignedIn, page};
use crate::AppState;

/// The largest file accepted.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 10 * 1024 * 1024;

/// The kinds of file accepted, told by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Pdf,
    Png,
    Jpeg,
}

impl Kind {
    /// What the bytes are, by their signature (the name and the browser's type are ignored).
    pub(crate) fn of(bytes: &[u8]) -> Option<Kind> {
        if bytes.starts_with(b"%PDF-") {
            Some(Kind::Pdf)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Kind::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Kind::Jpeg)
        } else {
            None
        }
    }

    fn mime(self) -> &'static str {
        match self {
            Kind::Pdf => "application/pdf",
            Kind::Png => "image/png",
            Kind::Jpeg => "image/jpeg",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Kind::Pdf => "pdf",
            Kind::Png => "png",
            Kind::Jpeg => "jpg",
        }
    }

    fn image(self) -> bool {
        matches!(self, Kind::Png | Kind::Jpeg)
    }
}

struct DocRow {
    id: String,
    title: String,
    kind: String,
    size: String,
    when: String,
    author: String,
    image: bool,
}

#[derive(Template)]
#[template(path = "documents.html")]
struct DocumentsPage {
    nav: Option<Nav>,
    banner: Banner,
    documents: Option<Vec<DocRow>>,
    may_upload: bool,
    problems: Problems,
    title: String,
    max_mb: usize,
}

/// The uploaded documents (DocumentReferences whose content is a Binary of ours).
fn is_upload(v: &Value) -> bool {
    v.pointer("/content/0/attachment/url")
        .and_then(Value::as_str)
        .is_some_and(|u| u.starts_with("Binary/"))
}

fn size_text(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MB", bytes as f64 / 1024.0 / 1024.0)
    } else {
        format!("{} kB", bytes.div_ceil(1024))
    }
}

async fn render(
    state: &AppState,
    me: &SignedIn,
    pid: &str,
    problems: Problems,
    title: String,
    status: StatusCode,
) -> Result<Response, PageError> {
    let actor = &me.actor;
    let (pid, banner) = banner_of(state, actor, pid).await?;
    let documents = if may_search(actor, "DocumentReference") {
        let found = find(
            state,
            actor,
            "DocumentReference",
            &[
                ("patient", pid.to_string()),
                ("_sort", "-date".into()),
                ("_count", "200".into()),
            ],
        )
        .await?;
        Some(
            found
                .iter()
                .map(Resource::value)
                .filter(is_upload)
                .map(|v| {
                    let a = v
                        .pointer("/content/0/attachment")
                        .cloned()
                        .unwrap_or_default();
                    let kind = a.get("contentType").and_then(Value::as_str).unwrap_or("");
                    DocRow {
                        id: v
                            .get("id")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        title: a
                            .get("title")
                            .or_else(|| v.get("description"))
                            .and_then(Value::as_str)
                            .unwrap_or("Document")
                            .to_string(),
                        kind: match kind {
                            "application/pdf" => "PDF",
                            "image/png" => "PNG image",
                            "image/jpeg" => "JPEG image",
                            _ => "File",
                        }
                        .to_string(),
                        image: kind.starts_with("image/"),
                        size: a
                            .get("size")
                            .and_then(Value::as_u64)
                            .map(size_text)
                            .unwrap_or_default(),
                        when: v
                            .get("date")
                            .and_then(Value::as_str)
                            .map(display_date)
                            .unwrap_or_default(),
                        author: v
                            .pointer("/author/0/display")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    }
                })
                .collect(),
        )
    } else {
        None
    };
    Ok(page(
        status,
        &DocumentsPage {
            nav: Some(me.nav()),
            banner,
            documents,
            may_upload: me.actor.scopes().allows("Binary", Interaction::Create)
                && me
                    .actor
                    .scopes()
                    .allows("DocumentReference", Interaction::Create),
            problems,
            title,
            max_mb: MAX_DOCUMENT_BYTES / 1024 / 1024,
        },
    ))
}

/// `GET /patients/{id}/documents`.
pub(crate) async fn documents(
    State(state): State<AppState>,
    me: SignedIn,
    Path(pid): Path<String>,
) -> Result<Response, PageError> {
    render(
        &state,
        &me,
        &pid,
        Problems::default(),
        String::new(),
        StatusCode::OK,
    )
    .await
}

/// `POST /patients/{id}/documents` (multipart: `csrf`, `title`, `file`).
pub(crate) async fn upload(
    State(state): State<AppState>,
    me: SignedIn,
    Path(pid): Path<String>,
    mut form: Multipart,
) -> Result<Response, PageError> {
    let mut csrf = String::new();
    let mut title = String::new();
    let mut file: Option<Vec<u8>> = None;
    let mut problems = Problems::default();
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => {
                problems.add(
                    "file",
                    format!(
                        "The upload could not be read; a file may be at most {} MB",
                        MAX_DOCUMENT_BYTES / 1024 / 1024
                    ),
                );
                break;
            }
        };
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            // Read to the end whatever the size (the connection stays usable and the page can
            // say why), keeping at most one byte more than a document may have.
            let mut kept: Vec<u8> = Vec::new();
            let mut total = 0usize;
            let mut field = field;
            loop {
                match field.chunk().await {
                    Ok(Some(chunk)) => {
                        total += chunk.len();
                        let room = (MAX_DOCUMENT_BYTES + 1).saturating_sub(kept.len());
                        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                    Ok(None) => break,
                    Err(_) => {
                        problems.add("file", "The upload could not be read; try again");
                        break;
                    }
                }
            }
            if total > MAX_DOCUMENT_BYTES {
                problems.add(
                    "file",
                    format!(
                        "The file is {}; a document may be at most {} MB",
                        size_text(total as u64),
                        MAX_DOCUMENT_BYTES / 1024 / 1024
                    ),
                );
            }
            file = Some(kept);
            continue;
        }
        let Ok(bytes) = field.bytes().await else {
            problems.add(
                "file",
                format!(
                    "The upload could not be read; a file may be at most {} MB",
                    MAX_DOCUMENT_BYTES / 1024 / 1024
                ),
            );
            break;
        };
        match name.as_str() {
            "csrf" => csrf = String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            "title" => {
                title = String::from_utf8_lossy(&bytes)
                    .trim()
                    .chars()
                    .take(200)
                    .collect()
            }
            _ => {}
        }
    }
    me.check_csrf(&csrf)?;
    let pid_id = patient_of(&state, &me.actor, &pid).await?.id;
    let bytes = file.unwrap_or_default();
    if problems.is_empty() {
        if bytes.is_empty() {
            problems.add("file", "Choose a file to upload");
        } else if Kind::of(&bytes).is_none() {
            problems.add(
                "file",
                "Only PDF, PNG and JPEG files can be added: this file is none of them, whatever its name says",
            );
        }
    }
    if title.is_empty() {
        problems.add(
            "title",
            "Give the document a title (e.g. “Discharge letter, St Mary's”)",
        );
    }
    let kind = Kind::of(&bytes);
    let (Some(kind), true) = (kind, problems.is_empty()) else {
        return render(
            &state,
            &me,
            &pid,
            problems,
            title,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let binary_url = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    let binary = json!({
        "resourceType": "Binary",
        "contentType": kind.mime(),
        "securityContext": {"reference": format!("Patient/{pid_id}")},
        "data": data
    });
    let document = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"text": "Uploaded document"},
        "category": [{"text": "Uploaded document"}],
        "subject": {"reference": format!("Patient/{pid_id}")},
        "date": state.records.now().to_string(),
        "author": [me_ref(&state, &me.actor).await?],
        "description": title,
        "content": [{"attachment": {
            "contentType": kind.mime(),
            "url": binary_url,
            "size": bytes.len(),
            "title": title
        }}]
    });
    super::visit::create_together(
        &state,
        &me.actor,
        vec![
            (ResourceType::BINARY, binary, Some(binary_url)),
            (ResourceType::DOCUMENT_REFERENCE, document, None),
        ],
    )
    .await?;
    Ok(Redirect::to(&format!("/patients/{pid_id}/documents")).into_response())
}

/// The document and its bytes, read as the user (both reads audited).
async fn file_of(
    state: &AppState,
    me: &SignedIn,
    pid: &str,
    doc: &str,
) -> Result<(Value, Vec<u8>, Kind), PageError> {
    let pid = patient_of(state, &me.actor, pid).await?.id;
    let not_found = || {
        PageError::Records(RecordsError::NotFound(
            "DocumentReference".into(),
            doc.into(),
        ))
    };
    let id = Id::parse(doc).ok_or_else(not_found)?;
    let found = state
        .records
        .read(&me.actor, ResourceType::DOCUMENT_REFERENCE, &id)
        .await?
        .value();
    if found.pointer("/subject/reference").and_then(Value::as_str)
        != Some(&format!("Patient/{pid}"))
    {
        return Err(not_found());
    }
    let binary = found
        .pointer("/content/0/attachment/url")
        .and_then(Value::as_str)
        .and_then(|u| u.strip_prefix("Binary/"))
        .and_then(Id::parse)
        .ok_or_else(not_found)?;
    let binary = state
        .records
        .read(&me.actor, ResourceType::BINARY, &binary)
        .await?
        .value();
    let bytes = binary
        .get("data")
        .and_then(Value::as_str)
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .ok_or_else(not_found)?;
    // What is served is what the bytes are, whatever was recorded about them.
    let kind = Kind::of(&bytes).ok_or_else(not_found)?;
    Ok((found, bytes, kind))
}

fn served(bytes: Vec<u8>, kind: Kind, disposition: String) -> Response {
    let mut response = (StatusCode::OK, bytes).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind.mime()));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /patients/{id}/documents/{doc}/file`: the file, as a download.
pub(crate) async fn download(
    State(state): State<AppState>,
    me: SignedIn,
    Path((pid, doc)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let (_, bytes, kind) = file_of(&state, &me, &pid, &doc).await?;
    // The name is ours (no user text in a header): document-<id>.<type>.
    let name = format!("document-{}.{}", doc, kind.extension());
    Ok(served(
        bytes,
        kind,
        format!("attachment; filename=\"{name}\""),
    ))
}

/// `GET /patients/{id}/documents/{doc}/preview`: an image, to show in the page.
pub(crate) async fn preview(
    State(state): State<AppState>,
    me: SignedIn,
    Path((pid, doc)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let (_, bytes, kind) = file_of(&state, &me, &pid, &doc).await?;
    if !kind.image() {
        return Err(PageError::Records(RecordsError::NotFound(
            "preview".into(),
            doc.chars().take(64).collect(),
        )));
    }
    Ok(served(bytes, kind, "inline".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_decides_the_type() {
        assert_eq!(Kind::of(b"%PDF-1.7\n..."), Some(Kind::Pdf));
        assert_eq!(Kind::of(b"\x89PNG\r\n\x1a\n\0\0"), Some(Kind::Png));
        assert_eq!(Kind::of(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(Kind::Jpeg));
        assert_eq!(Kind::of(b"<html><script>alert(1)</script>"), None);
        assert_eq!(Kind::of(b"  %PDF-1.7"), None, "not at the start");
        assert_eq!(Kind::of(b""), None);
        assert_eq!(size_text(1), "1 kB");
        assert_eq!(size_text(3 * 1024 * 1024), "3.0 MB");
    }
}
