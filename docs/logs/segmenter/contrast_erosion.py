"""Is the contrast error at the boundaries (misalignment, partial volume)? LV/myo of real and synthetic sequences on the
tuning fold with the masks eroded in-plane (LV by k+1, myocardium by k voxels). Output: contrast_erosion.log.
    .venv/bin/python docs/logs/segmenter/contrast_erosion.py"""
import numpy as np, nibabel as nib
from scipy.ndimage import binary_erosion
D="../shared/data/myops2020"
for seq,task in (("DE","lge"),("T2","t2"),("C0","bssfp")):
  for k in (0,1,2):
    res={}
    for i in (104,109,114,119,124):
        gd=np.asarray(nib.load(f"{D}/train25_myops_gd/myops_training_{i}_gd.nii.gz").dataobj)
        st=np.zeros((3,3,3),bool); st[:,:,1]=True
        lv=gd==500; myo=np.isin(gd,[200,1220,2221])
        if k: lv=binary_erosion(lv,st,iterations=k+1); myo=binary_erosion(myo,st,iterations=k)
        for name,p in (("real",f"{D}/train25/myops_training_{i}_{seq}.nii.gz"),("guide",f"output/utility_tune/guide/{task}/myops_training_{i}_{seq}_synth.nii.gz"),("cmrdiff",f"output/utility_tune/cmrdiff/{task}/myops_training_{i}_{seq}_synth.nii.gz"),("P2",f"output/utility_tune_pt/P2/{task}/myops_training_{i}_{seq}_synth.nii.gz")):
            im=np.asarray(nib.load(p).dataobj,np.float32)
            res.setdefault(name,[]).append(im[lv].mean()/im[myo].mean())
        res.setdefault("nmyo",[]).append(myo.sum())
    r=np.array(res["real"])
    print(task,"erode",k, " ".join(f"{n} {np.mean(v):.2f} (E {np.mean(np.abs(np.log(np.array(v)/r))):.2f})" for n,v in res.items() if n not in("nmyo",)), "myo vox", int(np.mean(res["nmyo"])))
