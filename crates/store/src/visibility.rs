//! What a caller may see, applied inside the SQL: the resource types, one patient's
//! compartment, sensitivity labels and break-the-glass grants. The records service's policy
//! decides; searches, history and reads of versions all apply it here, so that totals, pages,
//! chains and includes only ever cover rows the caller may see.

use crate::db::Sql;

/// How sensitive a version is, from its v3 Confidentiality label: who may see it. Stored as its
/// level (0, 1, 2); ordered, so that "at most restricted" is a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Sensitivity {
    /// No label, or U, L, M, N.
    #[default]
    Normal,
    /// R: the patient's own care team (and the patient) only, or break-the-glass.
    Restricted,
    /// V: not even the patient (psychotherapy notes and the like); a physician's
    /// break-the-glass.
    VeryRestricted,
}

impl Sensitivity {
    /// The stored level: 0, 1 or 2.
    pub const fn level(self) -> i64 {
        match self {
            Sensitivity::Normal => 0,
            Sensitivity::Restricted => 1,
            Sensitivity::VeryRestricted => 2,
        }
    }

    /// The sensitivity of a stored level (anything above 2 is very restricted, anything below 1
    /// normal).
    pub const fn of_level(level: i64) -> Sensitivity {
        match level {
            i64::MIN..=0 => Sensitivity::Normal,
            1 => Sensitivity::Restricted,
            _ => Sensitivity::VeryRestricted,
        }
    }
}

/// Which rows a search or history may return. The caller (the records service's policy)
/// decides; the store applies it inside the SQL, so totals, pages, chains and includes only ever
/// cover rows the caller may see.
#[derive(Debug, Clone)]
pub struct Visibility {
    /// Only resources of these types (`None`: any type).
    pub types: Option<Vec<String>>,
    /// Only one patient's compartment.
    pub compartment: Option<CompartmentRule>,
    /// Rows above this sensitivity are hidden, except those of `unrestricted_patients` up to
    /// `grant_ceiling`.
    pub max_sensitivity: Sensitivity,
    /// Patients whose restricted rows a break-the-glass grant opens.
    pub unrestricted_patients: Vec<String>,
    /// The highest sensitivity a grant opens (the actor's role decides).
    pub grant_ceiling: Sensitivity,
}

/// A patient compartment, plus the resource types in no compartment that remain visible (a
/// patient's practitioners, organizations, medications …).
#[derive(Debug, Clone)]
pub struct CompartmentRule {
    pub patient: String,
    pub shared_types: Vec<String>,
}

impl Visibility {
    /// Everything (the system actor).
    pub fn all() -> Visibility {
        Visibility {
            types: None,
            compartment: None,
            max_sensitivity: Sensitivity::VeryRestricted,
            unrestricted_patients: Vec::new(),
            grant_ceiling: Sensitivity::VeryRestricted,
        }
    }
}

pub(crate) fn visible(
    sql: &mut Sql,
    vis: &Visibility,
    type_col: &'static str,
    patient_col: &'static str,
    sensitivity_col: &'static str,
) {
    visible_in(sql, vis, type_col, &[patient_col], sensitivity_col);
}

/// [`visible`] for a row judged by several patient columns (a stored version: its own patient
/// and its resource's current one). Each must pass: the stricter wins.
pub(crate) fn visible_in(
    sql: &mut Sql,
    vis: &Visibility,
    type_col: &'static str,
    patient_cols: &[&'static str],
    sensitivity_col: &'static str,
) {
    if let Some(types) = &vis.types {
        sql.push(" AND ").push(type_col).push(" IN (");
        push_texts(sql, types);
        sql.push(")");
    }
    if let Some(c) = &vis.compartment {
        for patient_col in patient_cols {
            sql.push(" AND (")
                .push(patient_col)
                .push(" = ")
                .bind_text(&c.patient);
            if !c.shared_types.is_empty() {
                sql.push(" OR (")
                    .push(patient_col)
                    .push(" IS NULL AND ")
                    .push(type_col)
                    .push(" IN (");
                push_texts(sql, &c.shared_types);
                sql.push("))");
            }
            sql.push(")");
        }
    }
    // The highest sensitivity is every row.
    if vis.max_sensitivity < Sensitivity::VeryRestricted {
        sql.push(" AND (")
            .push(sensitivity_col)
            .push(" <= ")
            .bind_i64(vis.max_sensitivity.level());
        if !vis.unrestricted_patients.is_empty() && vis.grant_ceiling > vis.max_sensitivity {
            // A break-the-glass grant lifts labels up to the actor's ceiling, never beyond.
            sql.push(" OR (")
                .push(sensitivity_col)
                .push(" <= ")
                .bind_i64(vis.grant_ceiling.level());
            for patient_col in patient_cols {
                sql.push(" AND ").push(patient_col).push(" IN (");
                push_texts(sql, &vis.unrestricted_patients);
                sql.push(")");
            }
            sql.push(")");
        }
        sql.push(")");
    }
}

fn push_texts(sql: &mut Sql, items: &[String]) {
    if items.is_empty() {
        // `IN ()` is not SQL; nothing is in the empty list.
        sql.push("NULL");
    }
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind_text(item);
    }
}
