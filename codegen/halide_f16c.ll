; f16 -> f32 conversion for the Halide generators (codegen/halide_f16c.h).
;
; Halide 14 lowers every Float(16) cast in software (~6-17 vector ops per 16
; values), even for targets with F16C. LLVM itself lowers `fpext half` to one
; vcvtph2ps (F16C, or AVX-512F for 16 lanes). A pipeline calls the scalar
; function as a pure extern; Halide's code generator then picks the vector
; version named <name>x<lanes> from the module, and LLVM inlines it, folding
; the load into vcvtph2ps. Linked into x86-64 pipelines only.
target datalayout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-f80:128-n8:16:32:64-S128"
target triple = "x86_64-unknown-linux-gnu"

define weak_odr hidden float @ek_f16_bits_to_f32(i16 %bits) #0 {
  %h = bitcast i16 %bits to half
  %f = fpext half %h to float
  ret float %f
}

define weak_odr hidden <4 x float> @ek_f16_bits_to_f32x4(<4 x i16> %bits) #0 {
  %h = bitcast <4 x i16> %bits to <4 x half>
  %f = fpext <4 x half> %h to <4 x float>
  ret <4 x float> %f
}

define weak_odr hidden <8 x float> @ek_f16_bits_to_f32x8(<8 x i16> %bits) #0 {
  %h = bitcast <8 x i16> %bits to <8 x half>
  %f = fpext <8 x half> %h to <8 x float>
  ret <8 x float> %f
}

define weak_odr hidden <16 x float> @ek_f16_bits_to_f32x16(<16 x i16> %bits) #0 {
  %h = bitcast <16 x i16> %bits to <16 x half>
  %f = fpext <16 x half> %h to <16 x float>
  ret <16 x float> %f
}

attributes #0 = { alwaysinline nounwind readnone }
