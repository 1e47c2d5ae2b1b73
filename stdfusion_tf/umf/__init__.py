"""UMF-CMGR (Wang, Liu, Fan, Liu, IJCAI 2022) in Keras 3: fusion of misaligned
infrared/visible pairs.  CPSTN turns the visible image into a pseudo-infrared
one, MRRN registers the distorted infrared image to it with a dense
deformation field, DIFN fuses the registered infrared with the visible image.

Ported from the authors' PyTorch code (wdhudiekou/UMF-CMGR @ 17a7af5, MIT);
where the code and the paper differ, the code (which made the released
weights) wins, and the difference is documented next to the code.
"""
