// What the hostile guests do to their host, shared by each crate with
// `include!`: every one is stopped by a budget, never by returning.

/// Burns CPU until the host's CPU budget stops it.
pub fn spin() -> ! {
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// Takes memory a MiB at a time until the host's memory limit stops it.
pub fn hoard() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![7u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

/// Recurses until the stack runs out.
#[allow(unconditional_recursion, dead_code)] // the point; not every guest recurses
pub fn deep(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 64]);
    1 + deep(pad[(n % 64) as usize] + 1) + pad[3]
}
