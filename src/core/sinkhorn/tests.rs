use super::*;
use crate::core::cost::{DenseCost, PointCost};
use crate::core::testing::{plan_of, uniform};
use ndarray::{Array1, Array2, Axis as NdAxis};

/// A deterministic pseudo-random problem on the unit square with squared distances.
fn problem(n: usize, m: usize) -> (Array2<f64>, Array2<f64>, Array1<f64>, Array1<f64>) {
    let mut next = uniform(12345);
    let x = Array2::from_shape_fn((n, 2), |_| next());
    let y = Array2::from_shape_fn((m, 2), |_| next());
    let mut a = Array1::from_shape_fn(n, |_| 0.1 + next());
    let mut b = Array1::from_shape_fn(m, |_| 0.1 + next());
    a /= a.sum();
    b /= b.sum();
    (x, y, a, b)
}

fn sq_cost(x: &Array2<f64>, y: &Array2<f64>) -> Array2<f64> {
    Array2::from_shape_fn((x.nrows(), y.nrows()), |(i, j)| {
        (x.row(i).to_owned() - y.row(j)).mapv(|t| t * t).sum()
    })
}

#[test]
fn balanced_plan_has_the_prescribed_marginals() {
    let (x, y, a, b) = problem(40, 30);
    let c = sq_cost(&x, &y);
    let k = DenseCost::new(c.view()).unwrap();
    let mut params = SinkhornParams::new(0.01);
    params.tol = 1e-12;
    params.max_iter = 10_000;
    let out = sinkhorn(&k, a.view(), b.view(), &params, None).unwrap();
    assert!(out.converged && out.marginal_error <= 1e-12, "{out:?}");
    let p = plan_of(&k, &out, &a, &b, 0.01);
    assert!((p.sum_axis(NdAxis(1)) - &a).iter().all(|d| d.abs() < 1e-12));
    assert!((p.sum_axis(NdAxis(0)) - &b).iter().all(|d| d.abs() < 1e-12));
    assert!(((&p * &c).sum() - out.transport_cost).abs() < 1e-14);
}

#[test]
fn unbalanced_fixed_point_conditions_hold() {
    let (x, y, a, b) = problem(25, 35);
    let c = sq_cost(&x, &y);
    let k = DenseCost::new(c.view()).unwrap();
    for (ra, rb) in [(None, Some(0.3)), (Some(0.2), None), (Some(0.5), Some(0.1))] {
        for update in [Update::Alternating, Update::Symmetric] {
            let mut params = SinkhornParams::new(0.05);
            params.reach_a = ra;
            params.reach_b = rb;
            params.update = update;
            params.tol = 1e-13;
            params.max_iter = 20_000;
            let out = sinkhorn(&k, a.view(), b.view(), &params, None).unwrap();
            assert!(out.converged, "{ra:?} {rb:?} {update:?}: {out:?}");
            let p = plan_of(&k, &out, &a, &b, 0.05);
            // First-order conditions: P1 = a e^{-f/ρ_a}, Pᵀ1 = b e^{-g/ρ_b}.
            let ta: Array1<f64> = a
                .iter()
                .zip(&out.f)
                .map(|(a, f)| a * ra.map_or(1.0, |r| (-f / r).exp()))
                .collect();
            let tb: Array1<f64> = b
                .iter()
                .zip(&out.g)
                .map(|(b, g)| b * rb.map_or(1.0, |r| (-g / r).exp()))
                .collect();
            assert!((p.sum_axis(NdAxis(1)) - ta).iter().all(|d| d.abs() < 1e-12));
            assert!((p.sum_axis(NdAxis(0)) - tb).iter().all(|d| d.abs() < 1e-12));
        }
    }
}

#[test]
fn eps_scaling_reaches_tiny_eps_and_matches_points_path() {
    let (x, y, a, b) = problem(60, 50);
    let c = sq_cost(&x, &y);
    let dense = DenseCost::new(c.view()).unwrap();
    let points = PointCost::new(x.view(), y.view(), 2.0).unwrap();
    let mut params = SinkhornParams::new(1e-4);
    params.eps_scaling = Some(0.5);
    params.tol = 1e-10;
    params.max_iter = 100_000;
    let d = sinkhorn(&dense, a.view(), b.view(), &params, None).unwrap();
    let p = sinkhorn(&points, a.view(), b.view(), &params, None).unwrap();
    assert!(d.converged && d.f.iter().all(|v| v.is_finite()));
    let scale = d.f.iter().fold(0.0f64, |s, v| s.max(v.abs()));
    // Balanced potentials are defined up to (f + c, g − c); the two schedules (different
    // diameter bounds) may pick different c, so compare the differences up to a constant.
    let diff = &d.f - &p.f;
    let spread = diff.iter().fold(f64::NEG_INFINITY, |s, v| s.max(*v))
        - diff.iter().fold(f64::INFINITY, |s, v| s.min(*v));
    assert!(spread <= 1e-10 * scale, "spread {spread}");
}

#[test]
fn annealing_with_one_update_per_stage_keeps_the_target_budget() {
    // Feydy-style annealing (Mignon et al. §II): one update per intermediate ε, then `max_iter`
    // updates at the target ε alone; the fixed point is the same as without annealing.
    let (x, y, a, b) = problem(40, 30);
    let c = sq_cost(&x, &y);
    let k = DenseCost::new(c.view()).unwrap();
    let mut params = SinkhornParams::new(1e-3);
    params.reach_b = Some(0.05);
    params.tol = 1e-11;
    params.max_iter = 10_000;
    let reference = sinkhorn(&k, a.view(), b.view(), &params, None).unwrap();
    params.eps_scaling = Some(0.5);
    params.stage_iter = Some(1);
    let annealed = sinkhorn(&k, a.view(), b.view(), &params, None).unwrap();
    assert!(reference.converged && annealed.converged);
    let gap = (&reference.g - &annealed.g)
        .iter()
        .fold(0.0f64, |s, v| s.max(v.abs()));
    assert!(gap < 1e-9, "{gap}");
    // Exactly one update per stage, and a small target budget is not eaten by the stages.
    let mut stages = 0;
    let mut e = k.diameter();
    while e > params.eps {
        stages += 1;
        e *= 0.5;
    }
    params.max_iter = 3;
    params.tol = 0.0;
    let short = sinkhorn(&k, a.view(), b.view(), &params, None).unwrap();
    assert_eq!(short.n_iter, stages + 3);
    params.stage_iter = Some(0);
    assert!(sinkhorn(&k, a.view(), b.view(), &params, None).is_err());
}

#[test]
fn warm_start_from_the_solution_stops_at_once() {
    let (x, y, a, b) = problem(20, 20);
    let c = sq_cost(&x, &y);
    let k = DenseCost::new(c.view()).unwrap();
    let mut params = SinkhornParams::new(0.05);
    params.tol = 1e-12;
    let out = sinkhorn(&k, a.view(), b.view(), &params, None).unwrap();
    let warm = sinkhorn(
        &k,
        a.view(),
        b.view(),
        &params,
        Some((out.f.view(), out.g.view())),
    )
    .unwrap();
    assert!(warm.converged && warm.n_iter <= 2, "{}", warm.n_iter);
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let (x, y, a, b) = problem(5, 6);
    let c = sq_cost(&x, &y);
    let k = DenseCost::new(c.view()).unwrap();
    let p = SinkhornParams::new(0.1);
    let name = |r: Result<SinkhornOutput>| match r.unwrap_err() {
        OtError::InvalidArgument { name, .. } | OtError::Shape { name, .. } => name,
        e => panic!("{e}"),
    };
    assert_eq!(name(sinkhorn(&k, b.view(), b.view(), &p, None)), "a");
    let mut neg = a.clone();
    neg[0] = -1.0;
    assert_eq!(name(sinkhorn(&k, neg.view(), b.view(), &p, None)), "a");
    let zero = Array1::zeros(6);
    assert_eq!(name(sinkhorn(&k, a.view(), zero.view(), &p, None)), "b");
    let mut bad = p.clone();
    bad.eps = 0.0;
    assert_eq!(name(sinkhorn(&k, a.view(), b.view(), &bad, None)), "reg");
    let mut bad = p.clone();
    bad.reach_b = Some(-1.0);
    assert_eq!(
        name(sinkhorn(&k, a.view(), b.view(), &bad, None)),
        "reach_b"
    );
    let mut bad = p.clone();
    bad.max_iter = 0;
    assert_eq!(
        name(sinkhorn(&k, a.view(), b.view(), &bad, None)),
        "max_iter"
    );
    let b2 = &b * 2.0;
    assert_eq!(name(sinkhorn(&k, a.view(), b2.view(), &p, None)), "b");
    let mut nan = c.clone();
    nan[(1, 1)] = f64::NAN;
    assert!(DenseCost::new(nan.view()).is_err());
}

/// A self-transport on the point kernel computes one softmin per symmetric update (its column
/// softmin is its row softmin); the dense kernel of the same matrix, which does not claim the
/// symmetry, computes both. The two solves must agree update for update.
#[test]
fn mirrored_symmetric_updates_equal_the_two_sided_ones() {
    let (x, _, a, _) = problem(60, 60);
    let c = sq_cost(&x, &x);
    let points = PointCost::new(x.view(), x.view(), 2.0).unwrap();
    let dense = DenseCost::new(c.view()).unwrap();
    assert!(points.is_symmetric() && !dense.is_symmetric());
    for reach in [None, Some(0.3)] {
        let mut params = SinkhornParams::new(0.02);
        params.update = Update::Symmetric;
        params.kernel = KernelChoice::Log;
        (params.reach_a, params.reach_b) = (reach, reach);
        params.tol = 1e-11;
        params.max_iter = 5_000;
        let fast = sinkhorn(&points, a.view(), a.view(), &params, None).unwrap();
        let plain = sinkhorn(&dense, a.view(), a.view(), &params, None).unwrap();
        assert!(fast.converged && plain.converged, "{reach:?}");
        assert_eq!(fast.n_iter, plain.n_iter, "{reach:?}");
        let gap = |u: &Array1<f64>, v: &Array1<f64>| (u - v).fold(0.0, |m: f64, d| m.max(d.abs()));
        assert!(gap(&fast.f, &plain.f) < 1e-11 && gap(&fast.g, &plain.g) < 1e-11);
        assert!((fast.objective - plain.objective).abs() < 1e-12 * plain.objective.abs());
    }
}
