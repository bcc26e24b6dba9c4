import torch
import torch.nn as nn
import torch.optim as optim
from torchvision import datasets, transforms
from torch.utils.data import DataLoader
import kubetune as ray  # kubetune: was `import ray`
from kubetune import tune  # kubetune: was `from ray import tune`
from kubetune.tune import ASHAScheduler  # kubetune: was `from ray.tune.schedulers ...`

# 1. Define the Model
class SimpleNet(nn.Module):
    def __init__(self, hidden_size):
        super(SimpleNet, self).__init__()
        self.fc1 = nn.Linear(28 * 28, hidden_size)
        self.fc2 = nn.Linear(hidden_size, 10)
    
    def forward(self, x):
        x = x.view(-1, 28 * 28)
        x = torch.relu(self.fc1(x))
        return self.fc2(x)

# 2. Define the Trainable Function (Ray Tune calls this for each trial)
def train_mnist(config):
    # Data loading
    transform = transforms.ToTensor()
    train_dataset = datasets.MNIST('.', train=True, download=True, transform=transform)
    train_loader = DataLoader(train_dataset, batch_size=64, shuffle=True)
    test_dataset = datasets.MNIST('.', train=False, transform=transform)
    test_loader = DataLoader(test_dataset, batch_size=64)

    # Model, optimizer, and loss
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = SimpleNet(config["hidden_size"]).to(device)
    optimizer = optim.Adam(model.parameters(), lr=config["lr"])
    criterion = nn.CrossEntropyLoss()

    # Training loop (2 epochs as example)
    for epoch in range(2):
        model.train()
        for data, target in train_loader:
            data, target = data.to(device), target.to(device)
            optimizer.zero_grad()
            output = model(data)
            loss = criterion(output, target)
            loss.backward()
            optimizer.step()

        # Validation
        model.eval()
        correct = 0
        total = 0
        with torch.no_grad():
            for data, target in test_loader:
                data, target = data.to(device), target.to(device)
                output = model(data)
                pred = output.argmax(dim=1, keepdim=True)
                correct += pred.eq(target.view_as(pred)).sum().item()
                total += target.size(0)
        
        accuracy = correct / total
        tune.report(accuracy=accuracy)  # Report metric for tuning and pruning

# 3. Initialize Ray and Set Up Tuning
ray.init(ignore_reinit_error=True)  # Initialize Ray (for local use)

search_space = {
    "lr": tune.loguniform(1e-5, 1e-1),  # Learning rate search space
    "hidden_size": tune.choice([64, 128, 256])  # Hidden size options
}

scheduler = ASHAScheduler(metric="accuracy", mode="max")  # Early stopping scheduler

tuner = tune.Tuner(
    train_mnist,
    image="kubetune-trainer:0.1.0",  # kubetune: the image the trials run in (added)
    param_space=search_space,
    tune_config=tune.TuneConfig(
        num_samples=6,  # Number of trials (combinations to try)
        scheduler=scheduler
    )
)

results = tuner.fit()  # Run the tuning

# 4. Get Best Results
best_result = results.get_best_result(metric="accuracy", mode="max")
print("Best config:", best_result.config)
print(f"Best accuracy: {best_result.metrics['accuracy']:.4f}")
