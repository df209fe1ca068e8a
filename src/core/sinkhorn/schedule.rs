//! The schedule of a solve: the entry point [`sinkhorn`], the choice of kernel representation,
//! ε-scaling from a large ε down to the target (Schmitzer 2019, §3.2), warm starts, and the
//! Newton steps that take over a stalled small-ε stage.

use super::*;

/// Solves the (semi-/un-)balanced entropic OT problem between `a` (rows) and `b` (columns).
/// `init` warm-starts from given potentials (ε-scaling is then skipped: the start is already close).
/// The iterations run on the representation `params.kernel` picks; the returned statistics and
/// marginal error are always those of the exact plan.
pub fn sinkhorn<K: CostKernel + ?Sized>(
    kernel: &K,
    a: ArrayView1<'_, f64>,
    b: ArrayView1<'_, f64>,
    params: &SinkhornParams,
    init: Option<(ArrayView1<'_, f64>, ArrayView1<'_, f64>)>,
) -> Result<SinkhornOutput> {
    let (a_vec, b_vec) = (a.to_vec(), b.to_vec());
    match choose_kernel(kernel.shape(), params) {
        KernelChoice::Stored64 => {
            if let Some(k) = StoredKernel::<K, f64>::new(kernel, &a_vec, &b_vec) {
                return solve(&k, a, b, params, init);
            }
        }
        KernelChoice::Stored32 => {
            if let Some(k) = StoredKernel::<K, f32>::new(kernel, &a_vec, &b_vec) {
                let out = solve(&k, a, b, params, init)?;
                if out.converged || out.n_iter >= params.max_iter {
                    return Ok(out);
                }
                // The f32 rounding can leave the exact plan just above `tol` where the stored
                // kernel's own estimate is below it: the last updates run in f64.
                let mut exact = params.clone();
                exact.kernel = KernelChoice::Stored64;
                exact.max_iter = params.max_iter - out.n_iter;
                let mut finished =
                    sinkhorn(kernel, a, b, &exact, Some((out.f.view(), out.g.view())))?;
                finished.n_iter += out.n_iter;
                return Ok(finished);
            }
        }
        KernelChoice::Sparse => {
            return Err(OtError::invalid(
                "kernel",
                "'sparse' needs point clouds (sinkhorn_points), not a cost matrix",
            ))
        }
        KernelChoice::Log | KernelChoice::Auto => {}
    }
    solve(kernel, a, b, params, init)
}

/// The representation `Auto` resolves to (an explicit choice is kept).
pub(super) fn choose_kernel((n, m): (usize, usize), params: &SinkhornParams) -> KernelChoice {
    if params.kernel != KernelChoice::Auto {
        return params.kernel;
    }
    // Building the kernel costs about one log-domain iteration.
    if params.max_iter < 3 {
        return KernelChoice::Log;
    }
    let entries = n.saturating_mul(m);
    // f32 first: it halves the bytes each update reads (the widening products run at the same
    // bandwidth-bound speed per byte as f64 ones), and a stage its rounding keeps above `tol`
    // is finished in f64 (see `sinkhorn`).
    if params.tol >= F32_MIN_TOL && entries.saturating_mul(4) <= STORED_BUDGET {
        KernelChoice::Stored32
    } else if entries.saturating_mul(8) <= STORED_BUDGET {
        KernelChoice::Stored64
    } else {
        KernelChoice::Log
    }
}

pub(super) fn solve<K: CostKernel + ?Sized>(
    kernel: &K,
    a: ArrayView1<'_, f64>,
    b: ArrayView1<'_, f64>,
    params: &SinkhornParams,
    init: Option<(ArrayView1<'_, f64>, ArrayView1<'_, f64>)>,
) -> Result<SinkhornOutput> {
    params.validate()?;
    let (n, m) = kernel.shape();
    if a.len() != n {
        return Err(OtError::shape(
            "a",
            format!("has {} weights but the cost has {n} rows", a.len()),
        ));
    }
    if b.len() != m {
        return Err(OtError::shape(
            "b",
            format!("has {} weights but the cost has {m} columns", b.len()),
        ));
    }
    let mass_a = check_weights("a", a.iter())?;
    let mass_b = check_weights("b", b.iter())?;
    if params.reach_a.is_none()
        && params.reach_b.is_none()
        && (mass_a - mass_b).abs() > 1e-8 * mass_a.max(mass_b)
    {
        return Err(OtError::invalid(
            "b",
            format!("balanced OT needs equal total masses, got {mass_a} for a and {mass_b} for b (set a reach to relax a marginal)"),
        ));
    }
    let (f0, g0) = match init {
        Some((f, g)) => (initial("f_init", f, n)?, initial("g_init", g, m)?),
        None => (vec![0.0; n], vec![0.0; m]),
    };
    let side = |w: ArrayView1<'_, f64>, mass, reach, potential, axis| Side {
        weights: w.to_vec(),
        log_weights: w.iter().map(|v| v.ln()).collect(),
        mass,
        reach,
        potential,
        axis,
    };
    let rows = side(a, mass_a, params.reach_a, f0, Axis::Rows);
    let cols = side(b, mass_b, params.reach_b, g0, Axis::Cols);
    // The side updated last satisfies its condition exactly on return: the exact marginal when
    // only one is exact (rows when both are, as POT's sinkhorn_log).
    let (mut first, mut last) = if params.reach_a.is_some() && params.reach_b.is_none() {
        (rows, cols)
    } else {
        (cols, rows)
    };

    let n_iter = anneal(kernel, &mut first, &mut last, params, init.is_some())?;
    solve_target(kernel, first, last, params, n_iter)
}

/// A warm-start potential `name`: `len` finite entries.
pub(super) fn initial(
    name: &'static str,
    potential: ArrayView1<'_, f64>,
    len: usize,
) -> Result<Vec<f64>> {
    if potential.len() != len {
        return Err(OtError::shape(
            name,
            format!("must have {len} entries, got {}", potential.len()),
        ));
    }
    crate::core::error::check_finite(name, potential.iter())?;
    Ok(potential.to_vec())
}

/// The ε-scaling stages before the target ε; returns the updates they used.
pub(super) fn anneal<K: CostKernel + ?Sized>(
    kernel: &K,
    first: &mut Side,
    last: &mut Side,
    params: &SinkhornParams,
    warm: bool,
) -> Result<usize> {
    let Some(q) = params.eps_scaling.filter(|_| !warm) else {
        return Ok(0);
    };
    let mut n_iter = 0;
    let mut stage_eps = kernel.diameter();
    while stage_eps > params.eps {
        // Intermediate stages only prepare a warm start for the next one, so a loose tolerance
        // (or a fixed number of updates) suffices; the iterations at the target ε have their own
        // budget `max_iter` when `stage_iter` is set, otherwise one of it is always kept for them.
        let stage = match params.stage_iter {
            Some(k) => Stage::new(params, stage_eps, 0.0, k),
            None => Stage::new(
                params,
                stage_eps,
                params.tol.max(1e-3),
                params.max_iter - 1 - n_iter,
            ),
        };
        if stage.max_iter == 0 {
            break;
        }
        n_iter += iterate(kernel, first, last, &stage)?.0;
        stage_eps *= q;
    }
    Ok(n_iter)
}

/// Iterations at the target ε. `converged` is judged on the returned plan itself: when the
/// iteration's own error estimate and the plan's differ by rounding across `tol`, a few more
/// updates settle it (or `converged` is false).
pub(super) fn solve_target<K: CostKernel + ?Sized>(
    kernel: &K,
    mut first: Side,
    mut last: Side,
    params: &SinkhornParams,
    mut n_iter: usize,
) -> Result<SinkhornOutput> {
    let mut budget = match params.stage_iter {
        Some(_) => params.max_iter,
        None => params.max_iter - n_iter,
    };
    let mut loop_tol = params.tol;
    for attempt in 0.. {
        // A retry gets a short budget: near the rounding floor of the plan's error no amount of
        // updates helps, and `converged` then says false.
        let attempt_budget = if attempt == 0 {
            budget
        } else {
            budget.min(RETRY_BUDGET)
        };
        let mut stage = Stage::new(params, params.eps, loop_tol, attempt_budget);
        stage.newton = attempt == 0 && newton_applies(params);
        let (iters, claimed) = iterate(kernel, &mut first, &mut last, &stage)?;
        n_iter += iters;
        budget -= iters;
        let (rows, cols) = if first.axis == Axis::Rows {
            (&first, &last)
        } else {
            (&last, &first)
        };
        let out = finish(kernel, rows, cols, params, n_iter)?;
        if out.converged || !claimed || budget == 0 || attempt == 4 {
            return Ok(out);
        }
        // The iteration's estimate (from its softmins, or a stored kernel's) met its tolerance
        // while the plan's error did not: ask the iteration for proportionally more.
        loop_tol *= 0.5 * params.tol / out.marginal_error;
    }
    unreachable!("the loop returns by its fifth attempt")
}

/// Whether a stalled target stage may switch to Newton steps ([`newton`]): balanced problems
/// with alternating updates.
pub(super) fn newton_applies(params: &SinkhornParams) -> bool {
    params.reach_a.is_none() && params.reach_b.is_none() && params.update == Update::Alternating
}

/// Sinkhorn updates at the target ε before Newton steps are tried: far from the solution and
/// at moderate ε Sinkhorn is the faster method, and most problems converge within them.
pub(super) const NEWTON_AFTER: usize = 500;
/// Newton steps at most (each costs two to a few exact passes over the plan).
pub(super) const NEWTON_MAX_STEPS: usize = 50;

/// Newton steps from the current state of a stalled stage (0 when the kernel cannot serve them).
pub(super) fn newton_pause<K: CostKernel + ?Sized>(
    kernel: &K,
    first: &mut Side,
    last: &mut Side,
    stage: &Stage,
) -> usize {
    let (rows, cols) = if first.axis == Axis::Rows {
        (first, last)
    } else {
        (last, first)
    };
    let max_steps = (stage.max_iter - NEWTON_AFTER).min(NEWTON_MAX_STEPS);
    newton::newton_steps(kernel, rows, cols, stage.eps, stage.tol, max_steps)
}

/// Updates of each retry of [`solve_target`].
pub(super) const RETRY_BUDGET: usize = 100;

/// One ε's iteration budget and stopping rule.
pub(super) struct Stage {
    /// Whether the iteration may switch to Newton steps after [`NEWTON_AFTER`] updates.
    pub(super) newton: bool,
    pub(super) eps: f64,
    pub(super) tol: f64,
    pub(super) max_iter: usize,
    pub(super) update: Update,
    pub(super) overrelaxation: bool,
}

impl Stage {
    pub(super) fn new(params: &SinkhornParams, eps: f64, tol: f64, max_iter: usize) -> Self {
        Stage {
            newton: false,
            eps,
            tol,
            max_iter,
            update: params.update,
            overrelaxation: params.overrelaxation,
        }
    }
}
