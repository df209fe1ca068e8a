//! Richardson–Lucy / iterative Bayesian unfolding on a binned response (DESIGN §3.4), shaped like
//! pyunfold's `iterative_unfold` (D'Agostini): with prior `p` (normalised), efficiencies `η`,
//! response `R` (effects × causes) and measured counts `n`,
//! `unfolded_k = (p_k/η_k) Σ_b R_bk n_b / (Rp)_b`, then `p ← unfolded / Σ unfolded`.
//! With column-stochastic R (η = 1) and normalised n this is `σ_k ← σ_k Σ_b R_bk ν_b/(Rσ)_b`.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use crate::core::error::{check_finite, check_weights, OtError, Result};

#[derive(Clone, Debug)]
pub struct RichardsonLucyOutput {
    /// Unfolded counts after the last iteration.
    pub unfolded: Array1<f64>,
    /// Normalised unfolded distribution after each iteration, (n_iter, L).
    pub history: Array2<f64>,
}

pub fn richardson_lucy(
    response: ArrayView2<'_, f64>,
    measured: ArrayView1<'_, f64>,
    n_iter: usize,
    efficiencies: Option<ArrayView1<'_, f64>>,
    prior: Option<ArrayView1<'_, f64>>,
) -> Result<RichardsonLucyOutput> {
    let (nb, l) = response.dim();
    if nb == 0 || l == 0 {
        return Err(OtError::shape(
            "response",
            format!("must not be empty, got shape ({nb}, {l})"),
        ));
    }
    check_finite("response", response.iter())?;
    if response.iter().any(|v| *v < 0.0) {
        return Err(OtError::invalid("response", "entries must be non-negative"));
    }
    if measured.len() != nb {
        return Err(OtError::shape(
            "measured",
            format!("has {} bins but the response has {nb} rows", measured.len()),
        ));
    }
    check_weights("measured", measured.iter())?;
    let eff: Vec<f64> = match efficiencies {
        Some(e) => {
            if e.len() != l {
                return Err(OtError::shape(
                    "efficiencies",
                    format!("has {} entries for {l} causes", e.len()),
                ));
            }
            check_finite("efficiencies", e.iter())?;
            if e.iter().any(|v| !(*v > 0.0 && *v <= 1.0 + 1e-12)) {
                return Err(OtError::invalid(
                    "efficiencies",
                    "entries must lie in (0, 1]",
                ));
            }
            e.to_vec()
        }
        None => response.columns().into_iter().map(|c| c.sum()).collect(),
    };
    let mut p: Vec<f64> = match prior {
        Some(pr) => {
            if pr.len() != l {
                return Err(OtError::shape(
                    "prior",
                    format!("has {} entries for {l} causes", pr.len()),
                ));
            }
            let mass = check_weights("prior", pr.iter())?;
            pr.iter().map(|v| v / mass).collect()
        }
        None => vec![1.0 / l as f64; l],
    };
    let mut unfolded = vec![0.0; l];
    let mut history = Vec::with_capacity(n_iter * l);
    let mut ratio = vec![0.0; nb];
    for _ in 0..n_iter {
        // ratio_b = n_b / (Rp)_b (bins the current prior cannot reach contribute nothing).
        for (b, row) in response.rows().into_iter().enumerate() {
            let folded: f64 = row.iter().zip(&p).map(|(r, pk)| r * pk).sum();
            ratio[b] = if folded > 0.0 {
                measured[b] / folded
            } else {
                0.0
            };
        }
        unfolded.fill(0.0);
        for (row, rb) in response.rows().into_iter().zip(&ratio) {
            for (u, r) in unfolded.iter_mut().zip(row) {
                *u += r * rb;
            }
        }
        for k in 0..l {
            unfolded[k] *= if eff[k] > 0.0 { p[k] / eff[k] } else { 0.0 };
        }
        let total: f64 = unfolded.iter().sum();
        if !(total > 0.0 && total.is_finite()) {
            return Err(OtError::Numerical(
                "the unfolded distribution vanished".into(),
            ));
        }
        p.iter_mut()
            .zip(&unfolded)
            .for_each(|(pk, u)| *pk = u / total);
        history.extend_from_slice(&p);
    }
    if n_iter == 0 {
        let total: f64 = measured.sum();
        unfolded
            .iter_mut()
            .zip(&p)
            .for_each(|(u, pk)| *u = pk * total);
    }
    Ok(RichardsonLucyOutput {
        unfolded: Array1::from(unfolded),
        history: Array2::from_shape_vec((n_iter, l), history).expect("n_iter rows"),
    })
}
