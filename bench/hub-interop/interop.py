# Python's side of check.ps1, run in the cpuref rig (real huggingface_hub and diffusers):
#   read  <cache> <repo> [variant]   loads what the module downloaded: snapshot_download(local_files_only=True),
#                                    DiffusionPipeline.from_pretrained(local_files_only=True), scan_cache_dir
#   write <cache> <repo> [variant]   downloads from the module's test server (HF_ENDPOINT) as diffusers does:
#                                    DiffusionPipeline.download, for the module to read
# Prints one JSON line.
import json
import sys

from huggingface_hub import scan_cache_dir, snapshot_download

mode, cache, repo = sys.argv[1:4]
variant = sys.argv[4] if len(sys.argv) > 4 else None

if mode == "read":
    import torch
    from diffusers import DiffusionPipeline

    path = snapshot_download(repo, cache_dir=cache, local_files_only=True)
    pipe = DiffusionPipeline.from_pretrained(repo, cache_dir=cache, local_files_only=True, variant=variant, torch_dtype=torch.float32)
    scan = scan_cache_dir(cache)
    print(json.dumps({
        "snapshot": path,
        "pipeline": type(pipe).__name__,
        "components": sorted(k for k, v in pipe.components.items() if v is not None),
        "repos": [{"repo_id": r.repo_id, "size_on_disk": r.size_on_disk, "refs": sorted(ref for rev in r.revisions for ref in rev.refs),
                   "commits": sorted(rev.commit_hash for rev in r.revisions), "nb_files": r.nb_files} for r in scan.repos],
        "warnings": [str(w) for w in scan.warnings],
    }))
elif mode == "write":
    from diffusers import DiffusionPipeline

    path = DiffusionPipeline.download(repo, cache_dir=cache, variant=variant)
    print(json.dumps({"snapshot": str(path)}))
else:
    raise SystemExit(f"unknown mode {mode}")
