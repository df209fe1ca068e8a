use ndarray::{array, Array1, Array2};

use super::*;
use crate::core::cost::DenseCost;
use crate::core::cost::{grid_cost, grid_points, GroundCost};
use crate::core::sinkhorn::{sinkhorn, SinkhornParams};

/// A deterministic pseudo-random histogram on `n` bins with about a third of them empty.
fn histogram(n: usize, seed: u64) -> Array1<f64> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut h = Array1::from_shape_fn(n, |_| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = (state >> 11) as f64 / (1u64 << 53) as f64;
        if r < 0.33 {
            0.0
        } else {
            r
        }
    });
    h /= h.sum();
    h
}

/// The same pair solved by the general log-domain `sinkhorn` on the supports.
fn reference(c: &Array2<f64>, a: &Array1<f64>, b: &Array1<f64>, eps: f64) -> (f64, f64) {
    let rows: Vec<usize> = (0..a.len()).filter(|&i| a[i] > 0.0).collect();
    let cols: Vec<usize> = (0..b.len()).filter(|&j| b[j] > 0.0).collect();
    let sub = Array2::from_shape_fn((rows.len(), cols.len()), |(r, s)| c[(rows[r], cols[s])]);
    let sa = Array1::from_iter(rows.iter().map(|&i| a[i]));
    let sb = Array1::from_iter(cols.iter().map(|&j| b[j]));
    let mut p = SinkhornParams::new(eps);
    p.tol = 1e-13;
    p.max_iter = 100_000;
    let out = sinkhorn(
        &DenseCost::new(sub.view()).unwrap(),
        sa.view(),
        sb.view(),
        &p,
        None,
    )
    .unwrap();
    assert!(out.converged);
    (out.transport_cost, out.objective)
}

#[test]
fn matches_the_log_domain_solver_on_supports() {
    let c = grid_cost(5, 6, GroundCost::Atan).unwrap();
    let a = histogram(30, 1);
    let targets = Array2::from_shape_fn((4, 30), |(k, j)| histogram(30, 10 + k as u64)[j]);
    for eps in [1.0, 0.3, 0.05] {
        let params = BatchParams {
            eps,
            max_iter: 100_000,
            tol: 1e-12,
        };
        let out = sinkhorn_one_to_many(c.view(), a.view(), targets.view(), &params, None).unwrap();
        for k in 0..4 {
            let (t, o) = reference(&c, &a, &targets.row(k).to_owned(), eps);
            assert!(
                out.converged[(0, k)],
                "eps {eps}, target {k}: {} after {}",
                out.marginal_error[(0, k)],
                out.n_iter[(0, k)]
            );
            assert!(
                (out.transport_cost[(0, k)] - t).abs() < 1e-10,
                "eps {eps}: {} vs {t}",
                out.transport_cost[(0, k)]
            );
            assert!(
                (out.objective[(0, k)] - o).abs() < 1e-10,
                "eps {eps}: {} vs {o}",
                out.objective[(0, k)]
            );
        }
    }
}

#[test]
fn stays_finite_at_tiny_eps_and_reports_honestly() {
    // Distances up to ~10 pixel units at ε = 1e-3: exp(−C/ε) underflows everywhere off the
    // diagonal, so only the log-domain fallback keeps the iteration alive.
    let c = grid_cost(8, 8, GroundCost::Distance).unwrap();
    let a = histogram(64, 3);
    let targets = Array2::from_shape_fn((2, 64), |(k, j)| histogram(64, 20 + k as u64)[j]);
    let params = BatchParams {
        eps: 1e-3,
        max_iter: 50,
        tol: 1e-9,
    };
    let out = sinkhorn_one_to_many(c.view(), a.view(), targets.view(), &params, None).unwrap();
    assert!(out.transport_cost.iter().all(|v| v.is_finite()));
    for k in 0..2 {
        assert_eq!(out.converged[(0, k)], out.marginal_error[(0, k)] <= 1e-9);
    }
}

#[test]
fn displacement_is_the_difference_of_centres_of_mass() {
    let (h, w) = (6, 7);
    let c = grid_cost(h, w, GroundCost::Log1p).unwrap();
    let pts = grid_points(h, w).unwrap();
    let a = histogram(h * w, 5);
    let targets = Array2::from_shape_fn((3, h * w), |(k, j)| histogram(h * w, 40 + k as u64)[j]);
    let params = BatchParams {
        eps: 0.2,
        max_iter: 100_000,
        tol: 1e-12,
    };
    let out = sinkhorn_pairwise(
        c.view(),
        a.view().insert_axis(ndarray::Axis(0)),
        targets.view(),
        &params,
        Some((pts.view(), pts.view())),
    )
    .unwrap();
    let disp = out.displacement.unwrap();
    let centre = |hist: ndarray::ArrayView1<f64>| pts.t().dot(&hist);
    for k in 0..3 {
        let expected = centre(targets.row(k)) - centre(a.view());
        for l in 0..2 {
            assert!((disp[(0, k, l)] - expected[l]).abs() < 1e-9);
        }
    }
}

#[test]
fn rejects_bad_input() {
    let c = grid_cost(2, 2, GroundCost::Atan).unwrap();
    let a = array![0.25, 0.25, 0.25, 0.25];
    let ok = array![[0.5, 0.5, 0.0, 0.0]];
    let p = BatchParams {
        eps: 0.1,
        max_iter: 100,
        tol: 1e-9,
    };
    let run = |a: Array1<f64>, t: Array2<f64>, p: &BatchParams| {
        sinkhorn_one_to_many(c.view(), a.view(), t.view(), p, None)
    };
    let name = |r: Result<BatchOutput>| match r {
        Err(OtError::InvalidArgument { name, .. }) | Err(OtError::Shape { name, .. }) => name,
        other => panic!(
            "expected an error, got {:?}",
            other.map(|o| o.transport_cost)
        ),
    };
    assert_eq!(
        name(run(array![0.5, -0.5, 0.5, 0.5], ok.clone(), &p)),
        "sources"
    );
    assert_eq!(
        name(run(array![0.0, 0.0, 0.0, 0.0], ok.clone(), &p)),
        "sources"
    );
    assert_eq!(
        name(run(a.clone(), array![[1.0, 1.0, 0.0, 0.0]], &p)),
        "targets"
    );
    assert_eq!(name(run(a.clone(), array![[1.0, 0.0, 0.0]], &p)), "targets");
    assert_eq!(
        name(run(
            a.clone(),
            ok.clone(),
            &BatchParams {
                eps: 0.0,
                ..p.clone()
            }
        )),
        "reg"
    );
    assert_eq!(
        name(run(
            a.clone(),
            ok.clone(),
            &BatchParams {
                max_iter: 0,
                ..p.clone()
            }
        )),
        "max_iter"
    );
}
