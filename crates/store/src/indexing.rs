//! What index rows hold, shared by the writer of the rows and the searches that read them.

/// Whether a reference parameter scopes a chart: one of the type's patient-compartment
/// parameters, or `patient`. A resource's dates are kept under the ids it refers to through
/// these (`idx_ref_date`), so that a search about one of them sorted by a date walks them in
/// order (see `ironchart_store::search`).
pub(crate) fn scopes_by_reference(res_type: &str, param: &str) -> bool {
    param == "patient" || ironchart_fhir::patient_compartment_params(res_type).contains(&param)
}

/// Longest indexed text kept (longer values are cut: search needs prefixes, not essays).
const MAX_INDEXED_TEXT: usize = 512;

/// Index text: at most [`MAX_INDEXED_TEXT`] bytes, without NUL (which PostgreSQL text cannot
/// hold; search values never contain it).
pub(crate) fn clip(s: &str) -> String {
    if s.contains('\0') {
        return clip(&s.replace('\0', ""));
    }
    if s.len() <= MAX_INDEXED_TEXT {
        return s.to_string();
    }
    let mut end = MAX_INDEXED_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
