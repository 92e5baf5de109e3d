package main

import "math/bits"

// subBucketBits gives 2^(subBucketBits-1) = 64 linear sub-buckets per power of
// two: every recorded value is kept within 1/64 (1.6 %) of its true value, in
// a fixed array of a few thousand counters instead of one sample per request.
const subBucketBits = 7
const subBuckets = 1 << subBucketBits // values below this are exact
const halfSubBuckets = subBuckets / 2
const bucketCount = (64-subBucketBits+1)*halfSubBuckets + subBuckets

// histogram is a log-linear (HDR-like) histogram of nanosecond values.
type histogram struct {
	counts [bucketCount]uint64
	total  uint64
	max    uint64
	sum    float64
}

func bucketOf(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - subBucketBits
	return shift*halfSubBuckets + int(v>>shift)
}

// highestIn is the largest value that lands in bucket i, so percentiles never under-report.
func highestIn(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	shift := i/halfSubBuckets - 1
	m := uint64(i - shift*halfSubBuckets)
	return (m+1)<<shift - 1
}

func (h *histogram) record(v uint64) {
	h.counts[bucketOf(v)]++
	h.total++
	h.sum += float64(v)
	if v > h.max {
		h.max = v
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.sum += o.sum
	if o.max > h.max {
		h.max = o.max
	}
}

// percentile returns the value at or below which q (0..1) of the values fall.
func (h *histogram) percentile(q float64) uint64 {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(highestIn(i), h.max)
		}
	}
	return h.max
}
