//! Unfolding of Monte Carlo events with weights, inefficiency and fakes, in absolute event
//! counts (the event model of OmniFold, Andreassen et al. 2020, applied to the discrete problem
//! of Craig, Faktor & Nachman, eq. 21).
//!
//! The MC is a set of gen points `x_k` with detector samples: in the sampled form each gen point
//! has M samples `y_km` with MC weights `s_km` (gen weight × per-sample weight), and a sample
//! that was not reconstructed is a row of NaN in the detector points (OmniFold's convention of
//! a placeholder value for a missing reco partner); in the dense form a response `R` (m×L)
//! whose column sums are the efficiencies, with gen weights `w_k`.
//!
//! With `f_k` the weighted fraction of gen point k's samples that were reconstructed (or the
//! column sum of `R`) and `R̄` the response normalised over reconstructed samples, the folded
//! measure is `ν_σ = Σ_k σ_k ε_k R̄(·|x_k) + β` (β: fakes). Writing `τ_k ∝ σ_k ε_k` (the
//! gen-level distribution of the *reconstructed* signal), the detector part is `(1 − φ) R̄τ`
//! with φ = |β| / |ν|: eq. (21) for τ on the gen points with a reconstructed sample, with the
//! reference measure `τ̂_k ∝ w_k f_k` (the MC's own reconstructed events, as weighted). Then
//! `σ_k = (|ν| − |β|) τ_k / ε_k` are events: their sum estimates the number of true events.
//!
//! The efficiency ε_k is either the fraction f_k itself, or a given smooth estimate ε̂(x_k) (the
//! estimators' default: with one sample per event, f_k is 1 at every reconstructed point and
//! says nothing about ε). The two differ in the gen points without a reconstructed sample:
//! * with a smooth ε̂, those points get σ_k = 0: the seen points sample the MC with density
//!   ∝ ε(x) p_MC(x), so their weights τ_k/ε̂(x_k) already estimate the whole truth, seen and
//!   unseen events alike (the inverse-probability weighting of an efficiency correction; giving
//!   the unseen points a share as well would count their mass twice);
//! * with per-point fractions (M samples per gen point, the paper's layout), a point with no
//!   reconstructed sample has f_k = 0 and cannot be corrected: it keeps the MC's share relative
//!   to the seen points, `σ_k = w_k Σ_seen σ / Σ_seen w` (an acceptance extrapolation by the MC).
//!
//! Gen points of zero MC weight get σ_k = 0.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use super::ot::{ot_unfold, OtUnfoldInput, OtUnfoldOutput, OtUnfoldParams};
use super::projection::Response;
use crate::core::error::{check_finite, OtError, Result};

/// How the MC's detector samples are given.
#[derive(Clone, Debug)]
pub enum McResponse<'a> {
    /// M samples per gen point in consecutive rows of the detector points (L·M rows; a row of
    /// NaN = not reconstructed), with optional per-sample weights (L, M) and an optional
    /// efficiency per gen point (L) that replaces the fraction of reconstructed samples (a
    /// smoothed estimate: with few samples per point the fraction k/M is noisy, and dividing by
    /// it biases the efficiency correction upwards, E[1/ε̂] > 1/ε).
    Samples {
        per_point: usize,
        sample_weight: Option<ArrayView2<'a, f64>>,
        efficiency: Option<ArrayView1<'a, f64>>,
    },
    /// A response `R` (m×L) with column sums in [0, 1] (the efficiencies).
    Dense(ArrayView2<'a, f64>),
}

/// The MC side of the problem: efficiencies, the normalised response on the gen points seen at
/// detector level, and the weights the result is expressed in.
#[derive(Clone, Debug)]
pub struct McModel {
    /// Reconstruction probability ε_k of every gen point (L): the fraction below, or a given
    /// smooth estimate.
    pub efficiency: Array1<f64>,
    /// The weighted fraction of each gen point's samples that were reconstructed (L): its
    /// detector-level MC weight is `w_k · fraction_k` (the column sum for a dense response).
    pub fraction: Array1<f64>,
    /// MC weight w_k of every gen point (L): the gen weight times the sum of its sample weights
    /// divided by M (so unit weights give w_k = 1).
    pub mc_weight: Array1<f64>,
    /// Gen points with ε_k > 0 and positive MC weight, in order.
    pub seen: Vec<usize>,
    /// Rows of the detector points that enter the response, in order.
    pub rows: Vec<usize>,
    /// Column-normalised response on `rows` × `seen`.
    pub response: Response,
    /// Whether gen points not seen at detector level get the MC's share of the unfolded events
    /// (per-point efficiencies) or none (a smooth efficiency, whose 1/ε̂ on the seen points
    /// already carries their mass; module docs).
    pub extrapolate_unseen: bool,
}

fn check_gen_weight(gen_weight: Option<ArrayView1<'_, f64>>, l: usize) -> Result<Array1<f64>> {
    let Some(g) = gen_weight else {
        return Ok(Array1::ones(l));
    };
    if g.len() != l {
        return Err(OtError::shape(
            "gen_weight",
            format!("has {} weights but gen has {l} points", g.len()),
        ));
    }
    check_finite("gen_weight", g.iter())?;
    if g.iter().any(|v| *v < 0.0) {
        return Err(OtError::invalid(
            "gen_weight",
            "weights must be non-negative: negative MC weights are not supported (the unfolded \
             weights are a measure); merge them into positive ones first",
        ));
    }
    Ok(g.to_owned())
}

impl McModel {
    /// Validates the MC and builds the model. `points` are the detector points (rows, d).
    pub fn new(
        points: ArrayView2<'_, f64>,
        mc: &McResponse<'_>,
        n_gen: usize,
        gen_weight: Option<ArrayView1<'_, f64>>,
    ) -> Result<Self> {
        let gw = check_gen_weight(gen_weight, n_gen)?;
        match mc {
            McResponse::Samples {
                per_point,
                sample_weight,
                efficiency,
            } => {
                let mut model = Self::from_samples(points, *per_point, *sample_weight, gw)?;
                if let Some(e) = efficiency {
                    model.replace_efficiency(*e)?;
                }
                Ok(model)
            }
            McResponse::Dense(r) => Self::from_dense(points, *r, gw),
        }
    }

    fn from_samples(
        points: ArrayView2<'_, f64>,
        per_point: usize,
        sample_weight: Option<ArrayView2<'_, f64>>,
        gw: Array1<f64>,
    ) -> Result<Self> {
        let l = gw.len();
        if per_point == 0 || points.nrows() != l * per_point {
            return Err(OtError::shape(
                "reco",
                format!(
                    "has {} detector points, expected L·M = {l}·{per_point}",
                    points.nrows()
                ),
            ));
        }
        let reco_ok = reconstructed_rows(points)?;
        let sw = match sample_weight {
            Some(s) => {
                if s.dim() != (l, per_point) {
                    return Err(OtError::shape(
                        "sample_weight",
                        format!(
                            "has shape {:?}, expected (L, M) = ({l}, {per_point})",
                            s.dim()
                        ),
                    ));
                }
                check_finite("sample_weight", s.iter())?;
                if s.iter().any(|v| *v < 0.0) {
                    return Err(OtError::invalid(
                        "sample_weight",
                        "weights must be non-negative",
                    ));
                }
                s.to_owned()
            }
            None => Array2::ones((l, per_point)),
        };
        let mut efficiency = Array1::zeros(l);
        let mut mc_weight = Array1::zeros(l);
        let (mut seen, mut rows, mut owner, mut shares) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for k in 0..l {
            let sk = sw.row(k);
            let total: f64 = sk.sum();
            let reco: f64 = (0..per_point)
                .filter(|&j| reco_ok[k * per_point + j])
                .map(|j| sk[j])
                .sum();
            mc_weight[k] = gw[k] * total / per_point as f64;
            if total > 0.0 {
                efficiency[k] = reco / total;
            }
            if reco > 0.0 && gw[k] > 0.0 {
                let col = seen.len();
                seen.push(k);
                for j in (0..per_point).filter(|&j| reco_ok[k * per_point + j] && sk[j] > 0.0) {
                    owner.push(col);
                    shares.push(sk[j] / reco);
                    rows.push(k * per_point + j);
                }
            }
        }
        // Each detector sample belongs to one gen point whatever the counts and weights: the
        // response stays in its sampled form (O(m + L)), never a dense m×L matrix.
        let response = Response::new_samples(&owner, shares, seen.len())?;
        Ok(McModel {
            fraction: efficiency.clone(),
            efficiency,
            mc_weight,
            seen,
            rows,
            response,
            extrapolate_unseen: true,
        })
    }

    fn from_dense(
        points: ArrayView2<'_, f64>,
        r: ArrayView2<'_, f64>,
        gw: Array1<f64>,
    ) -> Result<Self> {
        let l = gw.len();
        if r.ncols() != l {
            return Err(OtError::shape(
                "response",
                format!("has {} columns but gen has {l} points", r.ncols()),
            ));
        }
        if r.nrows() != points.nrows() {
            return Err(OtError::shape(
                "reco",
                format!(
                    "has {} points but response has {} rows",
                    points.nrows(),
                    r.nrows()
                ),
            ));
        }
        check_finite("reco", points.iter())?;
        check_finite("response", r.iter())?;
        if r.iter().any(|v| *v < 0.0) {
            return Err(OtError::invalid("response", "entries must be non-negative"));
        }
        let efficiency = r.sum_axis(Axis(0));
        if let Some(k) = efficiency.iter().position(|e| *e > 1.0 + 1e-8) {
            return Err(OtError::invalid(
                "response",
                format!(
                    "column {k} sums to {}: columns are efficiencies and must not exceed 1",
                    efficiency[k]
                ),
            ));
        }
        let seen: Vec<usize> = (0..l)
            .filter(|&k| efficiency[k] > 0.0 && gw[k] > 0.0)
            .collect();
        let rows: Vec<usize> = (0..r.nrows())
            .filter(|&i| seen.iter().any(|&k| r[(i, k)] > 0.0))
            .collect();
        let rbar = Array2::from_shape_fn((rows.len(), seen.len()), |(i, c)| {
            r[(rows[i], seen[c])] / efficiency[seen[c]]
        });
        let efficiency = efficiency.mapv(|e| e.min(1.0));
        Ok(McModel {
            fraction: efficiency.clone(),
            efficiency,
            mc_weight: gw,
            seen,
            rows,
            response: Response::new_dense(rbar)?,
            extrapolate_unseen: true,
        })
    }

    /// Replaces the per-point fractions of reconstructed samples by a given efficiency (in
    /// [0, 1], one per gen point). A point whose given efficiency is 0 is not seen; a point
    /// without a reconstructed sample stays unseen whatever its efficiency (it has no response).
    fn replace_efficiency(&mut self, efficiency: ArrayView1<'_, f64>) -> Result<()> {
        let l = self.efficiency.len();
        if efficiency.len() != l {
            return Err(OtError::shape(
                "efficiency",
                format!("has {} entries but gen has {l} points", efficiency.len()),
            ));
        }
        check_finite("efficiency", efficiency.iter())?;
        if efficiency.iter().any(|e| !(0.0..=1.0).contains(e)) {
            return Err(OtError::invalid("efficiency", "entries must lie in [0, 1]"));
        }
        if efficiency.iter().all(|e| *e == 0.0) {
            return Err(OtError::invalid("efficiency", "all entries are zero"));
        }
        if let Some(c) = self.seen.iter().position(|&k| efficiency[k] == 0.0) {
            return Err(OtError::invalid(
                "efficiency",
                format!(
                    "gen point {} has reconstructed samples but efficiency 0",
                    self.seen[c]
                ),
            ));
        }
        self.efficiency.assign(&efficiency);
        self.extrapolate_unseen = false;
        Ok(())
    }

    /// True when every gen point is seen, fully reconstructed, with equal MC weights: the
    /// problem is then eq. (21) as in the paper.
    fn is_plain(&self) -> bool {
        let w0 = self.mc_weight[0];
        self.seen.len() == self.mc_weight.len()
            && self.fraction.iter().all(|e| *e == 1.0)
            && self.mc_weight.iter().all(|w| *w == w0)
    }

    /// Absolute gen-level weights from the normalised distribution `tau` of the reconstructed
    /// signal on the seen points, for `signal` reconstructed signal events (module docs).
    pub fn events_from_tau(&self, tau: ArrayView1<'_, f64>, signal: f64) -> Array1<f64> {
        let l = self.mc_weight.len();
        let mut sigma = Array1::zeros(l);
        let tau_sum: f64 = tau.sum();
        let (mut seen_sigma, mut seen_w) = (0.0, 0.0);
        // A mask, not `seen.contains`: that made every call O(L²), minutes at L = 10⁵.
        let mut is_seen = vec![false; l];
        for (&k, t) in self.seen.iter().zip(tau) {
            is_seen[k] = true;
            sigma[k] = signal * t / tau_sum / self.efficiency[k];
            seen_sigma += sigma[k];
            seen_w += self.mc_weight[k];
        }
        let scale = if seen_w > 0.0 && self.extrapolate_unseen {
            seen_sigma / seen_w
        } else {
            0.0
        };
        for k in 0..l {
            if self.efficiency[k] == 0.0 || !is_seen[k] && self.mc_weight[k] > 0.0 {
                sigma[k] = self.mc_weight[k] * scale;
            }
        }
        sigma
    }
}

/// Which rows of (L·M, d) detector points hold a reconstructed sample: all finite, or all NaN.
fn reconstructed_rows(points: ArrayView2<'_, f64>) -> Result<Vec<bool>> {
    points
        .rows()
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            if row.iter().all(|v| v.is_finite()) {
                Ok(true)
            } else if row.iter().all(|v| v.is_nan()) {
                Ok(false)
            } else {
                Err(OtError::invalid(
                    "reco",
                    format!(
                        "row {i} mixes NaN with values (or holds Inf): a sample is either \
                         reconstructed (finite) or not (all NaN)"
                    ),
                ))
            }
        })
        .collect()
}

/// The measured side: points, positive weights (events), optional fakes with their weights in
/// the same units.
#[derive(Clone, Debug)]
pub struct Measured<'a> {
    pub points: ArrayView2<'a, f64>,
    pub weights: ArrayView1<'a, f64>,
    pub fakes: Option<(ArrayView2<'a, f64>, ArrayView1<'a, f64>)>,
}

#[derive(Clone, Debug)]
pub struct EventUnfoldOutput {
    /// Unfolded weights of the gen points in events (L).
    pub weights: Array1<f64>,
    /// The normalised gen-level shape after every iteration (n_iter, L).
    pub shape_history: Array2<f64>,
    /// Efficiency ε_k and MC weight w_k of every gen point (L).
    pub efficiency: Array1<f64>,
    pub mc_weight: Array1<f64>,
    /// Diagnostics of the iteration (its `sigma` is τ on the seen points).
    pub iteration: OtUnfoldOutput,
}

/// The problem of an event unfolding: the MC samples and how they respond, the measured
/// events, and an optional prior.
pub struct EventUnfoldInput<'a> {
    /// Detector points of the MC samples (or of a dense response's rows).
    pub points: ArrayView2<'a, f64>,
    pub mc: &'a McResponse<'a>,
    /// Number of gen points L.
    pub n_gen: usize,
    /// MC weight of every gen point (L), all 1 when `None`.
    pub gen_weight: Option<ArrayView1<'a, f64>>,
    pub measured: Measured<'a>,
    /// Prior on the gen points (L); `None` starts from the reference measure of the MC weights.
    pub prior: Option<ArrayView1<'a, f64>>,
}

/// OT unfolding of MC events (module docs): σ in events on all L gen points.
pub fn ot_unfold_events(
    input: EventUnfoldInput<'_>,
    params: &OtUnfoldParams,
    progress: Option<&mut dyn FnMut(usize) -> Result<()>>,
) -> Result<EventUnfoldOutput> {
    let EventUnfoldInput {
        points,
        mc,
        n_gen,
        gen_weight,
        measured,
        prior,
    } = input;
    let model = McModel::new(points, mc, n_gen, gen_weight)?;
    if model.seen.is_empty() {
        return Err(OtError::invalid(
            "reco",
            "no gen point has a reconstructed sample with positive weight",
        ));
    }
    let response_points = points.select(Axis(0), &model.rows);
    let seen_prior = prior
        .map(|p| {
            if p.len() != n_gen {
                return Err(OtError::shape(
                    "prior",
                    format!("has {} entries for {n_gen} gen points", p.len()),
                ));
            }
            Ok(Array1::from_iter(
                model.seen.iter().map(|&k| p[k] * model.fraction[k]),
            ))
        })
        .transpose()?;
    let reference = (!model.is_plain()).then(|| {
        Array1::from_iter(
            model
                .seen
                .iter()
                .map(|&k| model.mc_weight[k] * model.fraction[k]),
        )
    });
    let input = OtUnfoldInput {
        response_points: response_points.view(),
        response: model.response.clone(),
        measured_points: measured.points,
        measured_weights: measured.weights,
        prior: seen_prior.as_ref().map(|p| p.view()),
        reference: reference.as_ref().map(|r| r.view()),
        fakes: measured.fakes,
    };
    let iteration = ot_unfold(input, params, progress)?;
    let fake_total = measured.fakes.map_or(0.0, |(_, w)| w.sum());
    let signal = measured.weights.sum() - fake_total;
    let weights = model.events_from_tau(iteration.sigma.view(), signal);
    let mut shape_history = Array2::zeros((iteration.n_iter, n_gen));
    for (mut row, tau) in shape_history
        .rows_mut()
        .into_iter()
        .zip(iteration.sigma_history.rows())
    {
        let s = model.events_from_tau(tau, 1.0);
        let total = s.sum();
        row.assign(&(s / total));
    }
    Ok(EventUnfoldOutput {
        weights,
        shape_history,
        efficiency: model.efficiency,
        mc_weight: model.mc_weight,
        iteration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3 gen points × 2 samples; point 1 has one sample not reconstructed, point 2 none.
    fn samples() -> Array2<f64> {
        let nan = f64::NAN;
        Array2::from_shape_vec((6, 1), vec![0.0, 0.1, 1.0, nan, nan, nan]).unwrap()
    }

    fn model(efficiency: Option<&Array1<f64>>) -> Result<McModel> {
        let mc = McResponse::Samples {
            per_point: 2,
            sample_weight: None,
            efficiency: efficiency.map(|e| e.view()),
        };
        McModel::new(samples().view(), &mc, 3, None)
    }

    #[test]
    fn given_efficiency_replaces_the_fractions_and_keeps_the_response() {
        let plain = model(None).unwrap();
        assert_eq!(plain.efficiency.to_vec(), vec![1.0, 0.5, 0.0]);
        let given = Array1::from(vec![0.9, 0.7, 0.6]);
        let smoothed = model(Some(&given)).unwrap();
        assert_eq!(smoothed.efficiency, given);
        assert_eq!(smoothed.seen, plain.seen); // point 2 has no sample: still unseen
        assert_eq!(smoothed.rows, plain.rows);
        assert_eq!(smoothed.fraction, plain.fraction);
        // σ = signal τ/ε on the seen points; the unseen one gets nothing from a smooth ε (the
        // seen points' 1/ε already carries it), the MC's share from per-point fractions.
        let tau = Array1::from(vec![0.5, 0.5]);
        let sigma = smoothed.events_from_tau(tau.view(), 10.0);
        assert!((sigma[0] - 5.0 / 0.9).abs() < 1e-12 && (sigma[1] - 5.0 / 0.7).abs() < 1e-12);
        assert_eq!(sigma[2], 0.0);
        let sigma = plain.events_from_tau(tau.view(), 10.0);
        assert!((sigma[0] - 5.0).abs() < 1e-12 && (sigma[1] - 10.0).abs() < 1e-12);
        assert!((sigma[2] - 7.5).abs() < 1e-12);
    }

    #[test]
    fn weighted_samples_keep_the_sampled_response() {
        // Unequal sample weights and an inefficient point: still one run of rows per gen point.
        let sample_weight =
            Array2::from_shape_vec((3, 2), vec![1.0, 3.0, 2.0, 1.0, 1.0, 1.0]).unwrap();
        let mc = McResponse::Samples {
            per_point: 2,
            sample_weight: Some(sample_weight.view()),
            efficiency: None,
        };
        let m = McModel::new(samples().view(), &mc, 3, None).unwrap();
        assert_eq!(m.rows, vec![0, 1, 2]);
        let Response::Samples { offsets, weights } = &m.response else {
            panic!("expected the sampled response, got {:?}", m.response);
        };
        assert_eq!(offsets, &vec![0, 2, 3]);
        assert_eq!(weights, &vec![0.25, 0.75, 1.0]);
        assert_eq!(m.fraction.to_vec(), vec![1.0, 2.0 / 3.0, 0.0]);
    }

    #[test]
    fn given_efficiency_is_validated() {
        for (e, word) in [
            (vec![0.5, 0.5], "entries"),
            (vec![0.5, 1.5, 0.5], "[0, 1]"),
            (vec![0.5, f64::NAN, 0.5], "NaN"),
            (vec![0.5, 0.0, 0.5], "efficiency 0"),
        ] {
            let err = model(Some(&Array1::from(e))).unwrap_err().to_string();
            assert!(err.contains("efficiency") && err.contains(word), "{err}");
        }
    }
}
