use super::*;
use crate::core::cost::DenseCost;
use crate::core::sinkhorn::{sinkhorn, KernelChoice, SinkhornOutput, SinkhornParams, Update};
use crate::core::testing::{plan_of, uniform};
use ndarray::{Array1, Array2};

/// Uniform points in the unit square, squared distances, positive random weights.
fn problem(n: usize, m: usize, seed: u64) -> (Array2<f64>, Array1<f64>, Array1<f64>) {
    let mut next = uniform(seed);
    let x: Vec<[f64; 2]> = (0..n).map(|_| [next(), next()]).collect();
    let y: Vec<[f64; 2]> = (0..m).map(|_| [next(), next()]).collect();
    let c = Array2::from_shape_fn((n, m), |(i, j)| {
        (x[i][0] - y[j][0]).powi(2) + (x[i][1] - y[j][1]).powi(2)
    });
    let mut a = Array1::from_shape_fn(n, |_| 0.1 + next());
    let mut b = Array1::from_shape_fn(m, |_| 0.1 + next());
    a /= a.sum();
    b /= b.sum();
    (c, a, b)
}

fn solve(
    c: &Array2<f64>,
    a: &Array1<f64>,
    b: &Array1<f64>,
    p: &SinkhornParams,
    kernel: KernelChoice,
) -> (SinkhornOutput, Array2<f64>) {
    let k = DenseCost::new(c.view()).unwrap();
    let mut params = p.clone();
    params.kernel = kernel;
    let out = sinkhorn(&k, a.view(), b.view(), &params, None).unwrap();
    let plan = plan_of(&k, &out, a, b, p.eps);
    (out, plan)
}

fn max_abs(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    (a - b).iter().fold(0.0f64, |s, v| s.max(v.abs()))
}

#[test]
fn stored_kernels_give_the_log_domain_plans() {
    let (c, a, b) = problem(70, 50, 7);
    let cases = [
        (0.05, None, None, Update::Alternating, None),
        (1e-3, None, None, Update::Alternating, Some(0.5)),
        (0.01, Some(0.3), None, Update::Alternating, None),
        (0.02, Some(0.5), Some(0.1), Update::Symmetric, None),
    ];
    for (eps, ra, rb, update, scaling) in cases {
        let mut p = SinkhornParams::new(eps);
        (p.reach_a, p.reach_b, p.update, p.eps_scaling) = (ra, rb, update, scaling);
        p.tol = 1e-11;
        p.max_iter = 50_000;
        let (log, reference) = solve(&c, &a, &b, &p, KernelChoice::Log);
        let (s64, plan64) = solve(&c, &a, &b, &p, KernelChoice::Stored64);
        assert!(log.converged && s64.converged, "{log:?} {s64:?}");
        assert!(s64.marginal_error <= p.tol);
        assert!(
            max_abs(&plan64, &reference) < 1e-12,
            "eps {eps}: {}",
            max_abs(&plan64, &reference)
        );
        // f32 storage: the fixed point moves by its rounding, the reported error stays honest.
        p.tol = 1e-6;
        let (s32, plan32) = solve(&c, &a, &b, &p, KernelChoice::Stored32);
        assert!(s32.marginal_error.is_finite());
        assert_eq!(s32.converged, s32.marginal_error <= p.tol, "{s32:?}");
        assert!(s32.converged, "{s32:?}");
        // Within tol (relative to the unit mass) of the tightly converged plan.
        assert!(
            max_abs(&plan32, &reference) < p.tol,
            "eps {eps}: {}",
            max_abs(&plan32, &reference)
        );
    }
}

#[test]
fn fused_products_equal_the_two_separate_passes() {
    let (c, a, b) = problem(37, 29, 5);
    let k = DenseCost::new(c.view()).unwrap();
    let builder = DenseBuilder::<_, f64> {
        inner: &k,
        element: std::marker::PhantomData,
    };
    let store = builder.build(&vec![0.1; 37], &vec![-0.05; 29], 0.07);
    let v: Vec<f64> = b.iter().map(|w| 2.0 * w).collect();
    // The row scalings depend on the fresh row products, as in an alternating update.
    let u_of = |i: usize, r: f64| a[i] / r;
    let (rows, cols) = store.fused_products(&v, &u_of);
    let rows_apart = store.row_products(&v);
    let u: Vec<f64> = rows_apart
        .iter()
        .enumerate()
        .map(|(i, &r)| u_of(i, r))
        .collect();
    let cols_apart = store.col_products(&u);
    let close = |x: &[f64], y: &[f64]| {
        x.iter()
            .zip(y)
            .all(|(p, q)| (p - q).abs() <= 1e-14 * q.abs())
    };
    assert!(close(&rows, &rows_apart) && close(&cols, &cols_apart));
    // A NaN scaling poisons the column products, so the caller falls back.
    let (_, poisoned) = store.fused_products(&v, &|i, r| if i == 3 { f64::NAN } else { a[i] / r });
    assert!(poisoned.iter().any(|s| s.is_nan()));
}

#[test]
fn tiny_eps_stays_finite_and_absorbs() {
    let (c, a, b) = problem(80, 80, 3);
    let k = DenseCost::new(c.view()).unwrap();
    let mut p = SinkhornParams::new(1e-5);
    p.eps_scaling = Some(0.5);
    p.tol = 1e-6;
    p.max_iter = 200_000;
    // The wrapper is passed as the kernel itself, so the driver must not wrap it again.
    p.kernel = KernelChoice::Log;
    let stored =
        StoredKernel::<_, f64>::new(&k, a.as_slice().unwrap(), b.as_slice().unwrap()).unwrap();
    let out = sinkhorn(&stored, a.view(), b.view(), &p, None).unwrap();
    assert!(out.f.iter().chain(&out.g).all(|v| v.is_finite()));
    assert!(out.converged && out.marginal_error <= 1e-6, "{out:?}");
    // One build per ε stage at least; absorption may add more.
    assert!(stored.rebuilds() >= 17, "{}", stored.rebuilds());
    let (log, reference) = solve(&c, &a, &b, &p, KernelChoice::Log);
    assert!(log.converged, "{log:?}");
    eprintln!(
        "stored {} it, log {} it, {} builds",
        out.n_iter,
        log.n_iter,
        stored.rebuilds()
    );
    let ours = plan_of(&k, &out, &a, &b, p.eps);
    // Both within tol of the same fixed point: plans agree to the marginal error's order.
    assert!(
        max_abs(&ours, &reference) < 1e-5,
        "{}",
        max_abs(&ours, &reference)
    );
}

#[test]
fn zero_weights_and_bad_starts_do_not_poison_the_kernel() {
    let (c, mut a, mut b) = problem(30, 40, 11);
    a[3] = 0.0;
    b[0] = 0.0;
    b[17] = 0.0;
    a /= a.sum();
    b /= b.sum();
    let mut p = SinkhornParams::new(2e-3);
    p.tol = 1e-10;
    p.max_iter = 100_000;
    let (log, reference) = solve(&c, &a, &b, &p, KernelChoice::Log);
    let (s64, plan64) = solve(&c, &a, &b, &p, KernelChoice::Stored64);
    assert!(log.converged && s64.converged);
    assert!(plan64.iter().all(|v| v.is_finite()));
    assert!(
        max_abs(&plan64, &reference) < 1e-12,
        "{log:?} {s64:?} {}",
        max_abs(&plan64, &reference)
    );
}
