"""A record of the command that ran (not part of the bundle): export the upsampler of a training run's last checkpoint
to a weights file. Needs the configs of commit 9690e71 (common.yaml `upsampler_def`); paths as on the machine it ran on."""
import sys, glob, torch
sys.path.insert(0, "/work/main")
from monai.bundle import ConfigParser
from bundle.weights import save_weights
run, out = sys.argv[1], sys.argv[2]
ck = sorted(glob.glob(f"{run}/upsampler_cpu/last_checkpoint_epoch=*.pt") + glob.glob(f"{run}/upsampler_cpu/last_*.pt"))[-1]
p = ConfigParser(); p.read_config(["/work/main/configs/common.yaml"]); p["device"] = "cpu"
up = p.get_parsed_content("upsampler_def")
sd = torch.load(ck, map_location="cpu", weights_only=False)
up.load_state_dict(sd["upsampler"])
save_weights(out, up, p.get_parsed_content("upsampler_arch"))
print(ck, "->", out)
