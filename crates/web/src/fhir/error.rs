//! Every error of the FHIR API becomes an `OperationOutcome` with the right status, here and
//! nowhere else. A 500 carries no detail (it is logged, without health data).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ironchart_records::RecordsError;
use serde_json::{Value, json};

/// An error answer of the FHIR API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub outcome: Value,
}

/// One issue of an OperationOutcome.
pub fn issue(severity: &str, code: &str, diagnostics: &str, expression: Option<&str>) -> Value {
    let mut i = json!({ "severity": severity, "code": code, "diagnostics": diagnostics });
    if let Some(e) = expression {
        i["expression"] = json!([e]);
    }
    i
}

pub fn outcome(issues: Vec<Value>) -> Value {
    json!({ "resourceType": "OperationOutcome", "issue": issues })
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &str,
        diagnostics: impl AsRef<str>,
        expression: Option<&str>,
    ) -> Self {
        ApiError {
            status,
            outcome: outcome(vec![issue("error", code, diagnostics.as_ref(), expression)]),
        }
    }

    pub fn bad_request(diagnostics: impl AsRef<str>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", diagnostics, None)
    }
}

impl From<RecordsError> for ApiError {
    fn from(e: RecordsError) -> Self {
        from_records(e, None)
    }
}

fn prefixed(prefix: Option<&str>, expression: &str) -> String {
    match prefix {
        Some(p) if expression.is_empty() => p.to_string(),
        Some(p) => [p, ".resource.", expression].concat(),
        None => expression.to_string(),
    }
}

fn from_records(e: RecordsError, prefix: Option<&str>) -> ApiError {
    use StatusCode as S;
    let expr = |e: Option<&str>| match (prefix, e) {
        (_, Some(e)) => Some(prefixed(prefix, e)),
        (Some(p), None) => Some(p.to_string()),
        (None, None) => None,
    };
    match e {
        RecordsError::Unauthorized => ApiError::new(
            S::UNAUTHORIZED,
            "login",
            "a valid bearer token is required",
            None,
        ),
        RecordsError::Forbidden(m) => ApiError::new(S::FORBIDDEN, "forbidden", m, None),
        RecordsError::Restricted(_) => ApiError::new(
            S::FORBIDDEN,
            "suppressed",
            "this record is restricted: break the glass (with a reason) to see it",
            None,
        ),
        RecordsError::AuditUnavailable => ApiError::new(
            S::SERVICE_UNAVAILABLE,
            "transient",
            "the audit log is unavailable, so the request was not completed; try again",
            None,
        ),
        RecordsError::KeyReplaced => {
            tracing::error!("{}", RecordsError::KeyReplaced);
            ApiError::new(
                S::SERVICE_UNAVAILABLE,
                "transient",
                "this server must be restarted by the operator (its master key was replaced)",
                None,
            )
        }
        RecordsError::Integrity(m) => {
            tracing::error!(error = %m, "integrity failure");
            ApiError::new(
                S::INTERNAL_SERVER_ERROR,
                "exception",
                "stored data failed its integrity check; the operator has been told",
                None,
            )
        }
        RecordsError::UnknownType(t) => ApiError::new(
            S::NOT_FOUND,
            "not-supported",
            format!("'{t}' is not a supported resource type"),
            expr(None).as_deref(),
        ),
        RecordsError::NotFound(t, id) => ApiError::new(
            S::NOT_FOUND,
            "not-found",
            format!("{t}/{id} is not known"),
            expr(None).as_deref(),
        ),
        RecordsError::Gone(t, id) => ApiError::new(
            S::GONE,
            "deleted",
            format!("{t}/{id} has been deleted"),
            expr(None).as_deref(),
        ),
        RecordsError::BadRequest {
            message,
            expression,
        } => ApiError::new(
            S::BAD_REQUEST,
            "invalid",
            message,
            expr(expression.as_deref()).as_deref(),
        ),
        RecordsError::Invalid(issues) => ApiError {
            status: S::UNPROCESSABLE_ENTITY,
            outcome: outcome(
                issues
                    .iter()
                    .map(|i| {
                        issue(
                            i.severity.code(),
                            i.code.code(),
                            &i.message,
                            expr(Some(&i.expression)).as_deref(),
                        )
                    })
                    .collect(),
            ),
        },
        RecordsError::PreconditionFailed(m) | RecordsError::Ambiguous { message: m, .. } => {
            ApiError::new(S::PRECONDITION_FAILED, "conflict", m, expr(None).as_deref())
        }
        RecordsError::Conflict(m) => {
            ApiError::new(S::CONFLICT, "conflict", m, expr(None).as_deref())
        }
        e @ RecordsError::Locked(_) => ApiError::new(
            S::CONFLICT,
            "business-rule",
            e.to_string(),
            expr(None).as_deref(),
        ),
        RecordsError::TooLarge(m) => {
            ApiError::new(S::PAYLOAD_TOO_LARGE, "too-costly", m, expr(None).as_deref())
        }
        RecordsError::Entry { index, source } => {
            let p = format!("Bundle.entry[{index}]");
            from_records(*source, Some(&p))
        }
        RecordsError::Config(m) => {
            tracing::error!(error = %m, "configuration error");
            ApiError::new(
                S::INTERNAL_SERVER_ERROR,
                "exception",
                "internal error",
                None,
            )
        }
        RecordsError::Store(err) if err.is_timeout() => ApiError::new(
            S::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took longer than the server's time limit and was stopped; narrow it \
             (a patient, a date range, fewer results per page) and try again",
            None,
        ),
        RecordsError::Store(err) if err.is_unavailable() => {
            tracing::error!(error = %err, "the database is unavailable");
            ApiError::new(
                S::SERVICE_UNAVAILABLE,
                "transient",
                "the database is unavailable, so the request was not completed; try again",
                None,
            )
        }
        RecordsError::Store(err) => {
            tracing::error!(error = %err, "store error");
            ApiError::new(
                S::INTERNAL_SERVER_ERROR,
                "exception",
                "internal error",
                None,
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.outcome.to_string()).into_response();
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(super::FHIR_JSON),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ironchart\""),
            );
        }
        response
    }
}

/// 404 for any route we do not have.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such route", None)
}

/// 405 for a method a route does not support.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "not-supported",
        "this interaction is not supported on this URL",
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironchart_store::StoreError;

    fn status_of(e: sqlx::Error) -> StatusCode {
        ApiError::from(RecordsError::Store(StoreError::Database(e))).status
    }

    #[test]
    fn a_database_out_of_reach_is_503_and_other_database_errors_500() {
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(
            status_of(sqlx::Error::Io(io())),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_of(sqlx::Error::PoolTimedOut),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_of(sqlx::Error::RowNotFound),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let unavailable = ApiError::from(RecordsError::Store(StoreError::Database(
            sqlx::Error::Io(io()),
        )));
        assert_eq!(unavailable.outcome["issue"][0]["code"], "transient");
    }
}
