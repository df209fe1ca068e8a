//! The iteration at one ε: alternating or symmetric updates of the two sides with the
//! safeguarded over-relaxation, the stopping test on the marginal error, and the final
//! statistics of the exact plan.

use super::*;

/// Runs at most `stage.max_iter` full updates at one ε; returns (iterations, whether the
/// iteration's own marginal-error estimate reached `stage.tol`).
pub(super) fn iterate<K: CostKernel + ?Sized>(
    kernel: &K,
    first: &mut Side,
    last: &mut Side,
    stage: &Stage,
) -> Result<(usize, bool)> {
    match stage.update {
        Update::Alternating => iterate_alternating(kernel, first, last, stage),
        Update::Symmetric => iterate_symmetric(kernel, first, last, stage),
    }
}

/// `Err` for a NaN error: the iteration broke down. An infinite error is only a state far from
/// the solution (a plan marginal beyond f64's range, as for zero potentials on a cost shifted by
/// −700 ε), which the next updates bring back.
pub(super) fn check_error(err: f64, k: usize, eps: f64) -> Result<()> {
    // A kernel pass that saw the cancellation flag stops early and leaves NaN.
    interrupt::check()?;
    if !err.is_nan() {
        Ok(())
    } else {
        Err(OtError::Numerical(format!(
            "non-finite marginal error at iteration {k} (ε = {eps:e})"
        )))
    }
}

/// Softmin buffers of one iteration.
pub(super) struct Scratch {
    pub(super) term: Vec<f64>,
    pub(super) s_first: Vec<f64>,
    pub(super) s_last: Vec<f64>,
}

impl Scratch {
    pub(super) fn new(first: &Side, last: &Side) -> Self {
        Scratch {
            term: Vec::new(),
            s_first: vec![0.0; first.potential.len()],
            s_last: vec![0.0; last.potential.len()],
        }
    }
}

/// Gauss–Seidel updates `φ ← φ + ω (λ φ̃ − φ)` of both sides, ω from [`Relaxation`] (1 when
/// over-relaxation is off), with the optimal translation of [`translate`] between them when a
/// side is relaxed. Both sides' marginal errors come from softmins the iteration
/// computes anyway: after a plain update the last side's condition holds exactly.
pub(super) fn iterate_alternating<K: CostKernel + ?Sized>(
    kernel: &K,
    first: &mut Side,
    last: &mut Side,
    stage: &Stage,
) -> Result<(usize, bool)> {
    let eps = stage.eps;
    let mut buf = Scratch::new(first, last);
    let mut relaxation = Relaxation::new(stage.overrelaxation);
    // Marginal error of the `last` side for the current state.
    let mut err_last = f64::INFINITY;
    // Whether `buf.s_first` already holds the first side's softmin for the current state.
    let mut have_first = false;
    // Newton steps taken; they count against the budget like updates.
    let mut newton = 0;
    for k in 0..stage.max_iter {
        if k + newton >= stage.max_iter {
            break;
        }
        interrupt::check()?;
        if stage.newton && k == NEWTON_AFTER {
            let steps = newton_pause(kernel, first, last, stage);
            if steps > 0 {
                // New potentials: the relaxation's rate estimates and both softmins are stale.
                newton += steps;
                relaxation = Relaxation::new(stage.overrelaxation);
                (err_last, have_first) = (f64::INFINITY, false);
            }
        }
        if err_last != 0.0 && relaxation.wants_projected_error() {
            softmin(kernel, last, first, eps, &mut buf.term, &mut buf.s_last);
            last.relax(&buf.s_last, eps, 1.0);
            err_last = 0.0;
            have_first = false;
        }
        if !have_first {
            softmin(kernel, first, last, eps, &mut buf.term, &mut buf.s_first);
        }
        if k > 0 {
            let err = first.error(&buf.s_first, eps) + err_last;
            check_error(err, k, eps)?;
            if err <= stage.tol
                && (err_last == 0.0 || finish_plain(kernel, first, last, eps, &mut buf, stage.tol)?)
            {
                return Ok((k + newton, true));
            }
            relaxation.observe(err);
        }
        let omega = relaxation.omega();
        first.relax(&buf.s_first, eps, omega);
        // Between the half-steps: the last side's update then starts from the translated
        // state, and the softmins the iteration keeps stay those of the current potentials.
        translate(first, last);
        let used;
        (used, have_first) = update_last(kernel, last, first, eps, omega, &mut buf);
        err_last = if used == 1.0 {
            0.0
        } else {
            last.error(&buf.s_last, eps)
        };
    }
    if err_last != 0.0 {
        // Out of budget after a relaxed update: a plain one, so the last side's condition (the
        // exact marginal, when there is one) holds on return.
        softmin(kernel, last, first, eps, &mut buf.term, &mut buf.s_last);
        last.relax(&buf.s_last, eps, 1.0);
    }
    Ok((stage.max_iter, false))
}

/// The last side's update `φ ← φ + ω (λ φ̃ − φ)` from its softmin against `first`. When the
/// last side is the rows, the same pass over the kernel also gives the first side's next
/// softmin (`buf.s_first`), valid unless the dual safeguard changed ω. Returns (the factor used,
/// whether `buf.s_first` holds that softmin).
pub(super) fn update_last<K: CostKernel + ?Sized>(
    kernel: &K,
    last: &mut Side,
    first: &Side,
    eps: f64,
    omega: f64,
    buf: &mut Scratch,
) -> (f64, bool) {
    if last.axis != Axis::Rows {
        softmin(kernel, last, first, eps, &mut buf.term, &mut buf.s_last);
        return (last.relax(&buf.s_last, eps, omega), false);
    }
    buf.term.resize(first.potential.len(), 0.0);
    first.term(eps, &mut buf.term);
    let fused = {
        let (lam, pot, lw) = (last.damping(eps), &last.potential, &last.log_weights);
        let row_term = |i: usize, s: f64| relaxed(pot[i], s, lam, omega) + eps * lw[i];
        let mut next = NextColumns {
            row_term: &row_term,
            shift: &first.potential,
            out: &mut buf.s_first,
        };
        kernel.softmin_rows_fused(&buf.term, pot, eps, &mut buf.s_last, &mut next)
    };
    let used = last.relax(&buf.s_last, eps, omega);
    (used, fused && used == omega)
}

/// After a relaxed update met `tol`: a plain update of the last side removes its remaining
/// error, then the first side is measured again. Returns whether the state still meets `tol`.
pub(super) fn finish_plain<K: CostKernel + ?Sized>(
    kernel: &K,
    first: &Side,
    last: &mut Side,
    eps: f64,
    buf: &mut Scratch,
    tol: f64,
) -> Result<bool> {
    softmin(kernel, last, first, eps, &mut buf.term, &mut buf.s_last);
    last.relax(&buf.s_last, eps, 1.0);
    softmin(kernel, first, last, eps, &mut buf.term, &mut buf.s_first);
    let err = first.error(&buf.s_first, eps);
    check_error(err, 0, eps)?;
    Ok(err <= tol)
}

/// Both sides from the same state, averaged with the previous potentials; on convergence one
/// alternating step so that `last` (the exact side, if any) holds exactly.
pub(super) fn iterate_symmetric<K: CostKernel + ?Sized>(
    kernel: &K,
    first: &mut Side,
    last: &mut Side,
    stage: &Stage,
) -> Result<(usize, bool)> {
    let eps = stage.eps;
    let mut buf = Scratch::new(first, last);
    // A self-transport (Feydy et al. 2019, Sec. 3.1) started from equal potentials keeps them
    // equal under these updates, and its column softmin is then its row softmin: one pass.
    let mirrored = kernel.is_symmetric() && first.mirrors(last);
    for k in 0..stage.max_iter {
        interrupt::check()?;
        softmin(kernel, first, last, eps, &mut buf.term, &mut buf.s_first);
        if mirrored && first.potential == last.potential {
            buf.s_last.copy_from_slice(&buf.s_first);
        } else {
            softmin(kernel, last, first, eps, &mut buf.term, &mut buf.s_last);
        }
        let err = first.error(&buf.s_first, eps) + last.error(&buf.s_last, eps);
        check_error(err, k, eps)?;
        if err <= stage.tol {
            first.relax(&buf.s_first, eps, 1.0);
            softmin(kernel, last, first, eps, &mut buf.term, &mut buf.s_last);
            last.relax(&buf.s_last, eps, 1.0);
            return Ok((k + 1, true));
        }
        first.average(&buf.s_first, eps);
        last.average(&buf.s_last, eps);
    }
    Ok((stage.max_iter, false))
}

/// Transport cost, objective and marginal error of the final potentials, from one pass over the
/// plan (which is kept when `params.keep_plan` asks for it).
pub(super) fn finish<K: CostKernel + ?Sized>(
    kernel: &K,
    rows: &Side,
    cols: &Side,
    params: &SinkhornParams,
    n_iter: usize,
) -> Result<SinkhornOutput> {
    let eps = params.eps;
    let mut row_term = vec![0.0; rows.potential.len()];
    let mut col_term = vec![0.0; cols.potential.len()];
    rows.term(eps, &mut row_term);
    cols.term(eps, &mut col_term);
    let (plan, sums) = if params.keep_plan {
        let (plan, sums) = kernel.plan_with_sums(&row_term, &col_term, eps);
        (Some(plan), sums)
    } else {
        (None, kernel.plan_sums(&row_term, &col_term, eps))
    };
    interrupt::check()?;
    // Σ P log(P/(a⊗b)) = (Σ_i r_i f_i + Σ_j c_j g_j − ⟨C,P⟩)/ε.
    let dot = |s: &[f64], p: &[f64]| s.iter().zip(p).map(|(x, y)| x * y).sum::<f64>();
    let plan_mass: f64 = sums.row_sums.iter().sum();
    let entropic = dot(&sums.row_sums, &rows.potential) + dot(&sums.col_sums, &cols.potential)
        - sums.transport_cost
        - eps * plan_mass
        + eps * rows.mass * cols.mass;
    let kl = |marginal: &[f64], w: &[f64]| {
        marginal
            .iter()
            .zip(w)
            .map(|(&r, &w)| if r > 0.0 { r * (r / w).ln() - r + w } else { w })
            .sum::<f64>()
    };
    let relaxation =
        |s: &Side, marginal: &[f64]| s.reach.map_or(0.0, |rho| rho * kl(marginal, &s.weights));
    let objective = sums.transport_cost
        + entropic
        + relaxation(rows, &sums.row_sums)
        + relaxation(cols, &sums.col_sums);
    let error = rows.plan_error(&sums.row_sums) + cols.plan_error(&sums.col_sums);
    if !(error.is_finite() && sums.transport_cost.is_finite() && objective.is_finite()) {
        return Err(OtError::Numerical(format!(
            "non-finite plan statistics (ε = {eps:e})"
        )));
    }
    Ok(SinkhornOutput {
        f: Array1::from(rows.potential.clone()),
        g: Array1::from(cols.potential.clone()),
        transport_cost: sums.transport_cost,
        objective,
        n_iter,
        marginal_error: error,
        converged: error <= params.tol,
        stages: Vec::new(),
        plan,
    })
}
