// The smallest downstream program: include the umbrella header, use the library, link nothing of ours.
#include <minigpt/model.hpp>

#include <cstdio>

int main() {
    auto x = minigpt::tensor::empty(minigpt::dtype::f32, {2, 3});
    x.eigen().setConstant(0.5f);
    const float sum = x.eigen().sum();
    std::printf("consumer: sum = %g\n", sum);
    return sum == 3.0f ? 0 : 1;
}
