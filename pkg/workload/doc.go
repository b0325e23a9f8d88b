// Package workload is gpuslice's vocabulary for the objects it acts on:
// a reference to a Deployment or StatefulSet, every annotation gpuslice
// reads or writes, the records its releases and lower-memory preemptions
// leave on a workload, and the GPU memory fraction. It is pure: the
// standard library only, so every other package (the pure ones included)
// can share it without linking client-go.
package workload
