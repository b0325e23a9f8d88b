package gpu

// The reference node homelabai (one GeForce RTX 3080 Ti, 12 GB) as NVML
// shows it while Plex transcodes, vLLM serves and TTS speaks; Ollama has
// unloaded its model and Whisper is idle, so neither holds memory. The
// figures follow the seed's "GPU Memory Considerations": vLLM stays under
// its GPU_MEMORY_UTILIZATION 0.70 of 12288 MiB (8602 MiB), Plex ~1.1 GiB,
// and TTS a little over the 1 GiB its gpu-memory annotation allows.
//
// They are a realistic fixture written by hand in NVML's types, not a dump
// from the card; `go test -tags gpu -v ./pkg/gpu/` prints the same values
// from a real GPU to compare with.
const (
	// RecordedDriverVersion is the driver the fixture claims.
	RecordedDriverVersion = "550.120"
	// RecordedUUID and RecordedModel identify the fixture's GPU.
	RecordedUUID  = "GPU-2f7c1b8e-5a3d-4e9f-b6c2-8d1e0a4f7b93"
	RecordedModel = "NVIDIA GeForce RTX 3080 Ti"

	// PIDs of the fixture's processes, as the host sees them.
	RecordedPIDXorg uint32 = 1893  // host process, graphics context only
	RecordedPIDTTS  uint32 = 27340 // ai/tts, python3 (Coqui TTS)
	RecordedPIDPlex uint32 = 31877 // media/plex, "Plex Transcoder": NVDEC/NVENC via CUDA, Vulkan tone mapping
	RecordedPIDVLLM uint32 = 48213 // ai-dev/vllm-server, python3 -m vllm.entrypoints.openai.api_server
)

const (
	mib              = uint64(1) << 20
	recordedTotalMiB = 12288
	// Driver reservations and contexts not charged to any process.
	recordedReservedMiB = 243
)

// Memory per process in the fixture, in bytes.
const (
	RecordedXorgBytes = 4 * mib
	RecordedTTSBytes  = 1180 * mib
	RecordedPlexBytes = 1126 * mib
	RecordedVLLMBytes = 8586 * mib
)

// RecordedRTX3080Ti returns a fresh Fake holding the fixture.
func RecordedRTX3080Ti() *Fake {
	used := RecordedXorgBytes + RecordedTTSBytes + RecordedPlexBytes + RecordedVLLMBytes + recordedReservedMiB*mib
	invalid := uint32(0xFFFFFFFF) // no MIG: NVML's "invalid instance" id
	proc := func(pid uint32, bytes uint64) ProcessInfo {
		return ProcessInfo{Pid: pid, UsedGpuMemory: bytes, GpuInstanceId: invalid, ComputeInstanceId: invalid}
	}
	return &Fake{Devices: []FakeDevice{{
		UUID: RecordedUUID,
		Name: RecordedModel,
		Memory: Memory{
			Total: recordedTotalMiB * mib,
			Used:  used,
			Free:  recordedTotalMiB*mib - used,
		},
		Utilization: Utilization{Gpu: 37, Memory: 21},
		Temperature: 61,
		Compute: []ProcessInfo{
			proc(RecordedPIDTTS, RecordedTTSBytes),
			proc(RecordedPIDPlex, RecordedPlexBytes),
			proc(RecordedPIDVLLM, RecordedVLLMBytes),
		},
		// Plex holds a Vulkan context too (nvidia-smi type "C+G"): NVML
		// lists it in both, with the same per-process figure.
		Graphics: []ProcessInfo{
			proc(RecordedPIDXorg, RecordedXorgBytes),
			proc(RecordedPIDPlex, RecordedPlexBytes),
		},
	}}}
}
