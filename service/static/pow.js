  // Proof of work (see service/challenges.py): the first n with `bits` leading zero bits
  // in SHA-256(challenge + ":" + n), found in 8 ms slices that leave the page responsive.
  const powSolve = (challenge, bits) => new Promise((resolve) => {
    const K = new Int32Array(64), H = [], w = new Int32Array(64), h = new Int32Array(8);
    for (let c = 2, n = 0, d; n < 64; c++) {
      for (d = 2; c % d; d++);
      if (d < c) continue;
      if (n < 8) H[n] = Math.sqrt(c) % 1 * 2 ** 32 | 0;
      K[n++] = Math.cbrt(c) % 1 * 2 ** 32 | 0;
    }
    const r = (x, n) => x >>> n | x << 32 - n;
    const hash = (s, to) => {
      for (let b = 0; b < to; b += 64) {
        for (let i = 0, j = b; i < 16; i++, j += 4) w[i] = s[j] << 24 | s[j + 1] << 16 | s[j + 2] << 8 | s[j + 3];
        for (let i = 16; i < 64; i++) {
          const x = w[i - 15], y = w[i - 2];
          w[i] = (r(x, 7) ^ r(x, 18) ^ x >>> 3) + w[i - 7] + (r(y, 17) ^ r(y, 19) ^ y >>> 10) + w[i - 16] | 0;
        }
        let a = h[0], b1 = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
        for (let i = 0; i < 64; i++) {
          const t = k + ((e >>> 6 | e << 26) ^ (e >>> 11 | e << 21) ^ (e >>> 25 | e << 7)) +
            (e & f ^ ~e & g) + K[i] + w[i] | 0;
          k = g; g = f; f = e; e = d + t | 0; d = c; c = b1; b1 = a;
          a = t + ((a >>> 2 | a << 30) ^ (a >>> 13 | a << 19) ^ (a >>> 22 | a << 10)) +
            (a & c ^ a & d ^ c & d) | 0;
        }
        h[0] += a; h[1] += b1; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
      }
    };
    // The challenge's whole blocks are hashed once; each try hashes the rest and n.
    const pre = Uint8Array.from(challenge + ":", (ch) => ch.charCodeAt(0));
    const whole = pre.length & ~63, rest = pre.length - whole, tail = new Uint8Array(128);
    h.set(H);
    hash(pre, whole);
    const mid = h.slice(), port = new MessageChannel();
    tail.set(pre.slice(whole));
    let n = 0;
    port.port1.onmessage = () => {
      for (const until = performance.now() + 8; performance.now() < until;) {
        for (let i = 0; i < 500; i++, n++) {
          const digits = String(n);
          let len = rest, end;
          for (let j = 0; j < digits.length; j++) tail[len++] = digits.charCodeAt(j);
          tail.fill(0, len, end = len < 56 ? 64 : 128);
          tail[len] = 128;
          len = (whole + len) * 8;
          tail[end - 2] = len >> 8;
          tail[end - 1] = len;
          h.set(mid);
          hash(tail, end);
          if (Math.clz32(h[0]) >= bits) {
            port.port1.close();
            return resolve(digits);
          }
        }
      }
      port.port2.postMessage(0);
    };
    port.port2.postMessage(0);
  });
